"""Keyset pagination, and counts that stop early: listings stay fast on a million rows.

A page is asked for relative to a cursor (the sort key of a row: a timestamp
and the id that breaks ties), so the database seeks in an index instead of
skipping OFFSET rows; and no listing counts more than it shows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from .extensions import db
from .filters import FilterError

T = TypeVar("T")

MAX_ID = 2**63 - 1
# Listings count at most this many matches and say "more than" beyond: a count of
# 1,000 index entries stays under a millisecond however many rows are stored, and
# an operator needs "more than 1,000", not an exact 13,412 (BENCHMARKS.md, section 4).
COUNT_CAP = 1_000
# Ours are about 60 characters; a longer one is not ours (and is not worth parsing).
MAX_CURSOR_LENGTH = 200


@dataclass
class Page(Generic[T]):
    """One page of rows, with cursors to the pages around it (None: nothing there)."""

    items: list[T]
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(timestamp: datetime, row_id: int) -> str:
    """An opaque cursor for the position of one row."""
    raw = json.dumps([timestamp.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(param: str, cursor: Any) -> tuple[datetime, int]:
    """The position a cursor stands for; FilterError if it is not one we made."""
    if not isinstance(cursor, str):
        raise FilterError(param, "must be a string")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise FilterError(param, "is not a cursor returned by this service")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        timestamp, row_id = json.loads(raw)
        position = datetime.fromisoformat(timestamp), row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise FilterError(param, "is not a cursor returned by this service") from None
    if position[0].tzinfo is not None or not isinstance(row_id, int) or not 0 <= row_id <= MAX_ID:
        raise FilterError(param, "is not a cursor returned by this service")
    return position


def keyset_page(
    query: Select,
    sort_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    *,
    limit: int,
    after: str | None = None,
    before: str | None = None,
    descending: bool = True,
    after_param: str = "after",
) -> Page[Any]:
    """The `limit` rows of `query` after the cursor `after` (or just before `before`).

    Rows are in (sort_column, id_column) order, descending by default. `query`
    must select one ORM entity that has both columns. `after_param` names the
    cursor in error messages (the API calls it `cursor`).
    """
    key = tuple_(sort_column, id_column)
    backwards = before is not None
    if backwards:
        position = decode_cursor("before", before)
        # Walk away from the cursor in the opposite direction, then turn the page round.
        condition = key > position if descending else key < position
        walk_descending = not descending
    else:
        position = decode_cursor(after_param, after) if after is not None else None
        condition = (key < position if descending else key > position) if position else None
        walk_descending = descending
    if condition is not None:
        query = query.where(condition)
    order = (sort_column.desc(), id_column.desc()) if walk_descending else (sort_column, id_column)
    rows = list(db.session.scalars(query.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]

    def cursor_of(row: Any) -> str:
        return encode_cursor(getattr(row, sort_column.key), getattr(row, id_column.key))

    if backwards:
        rows.reverse()
        return Page(
            items=rows,
            next_cursor=cursor_of(rows[-1]) if rows else before,
            prev_cursor=cursor_of(rows[0]) if rows and more else None,
        )
    return Page(
        items=rows,
        next_cursor=cursor_of(rows[-1]) if rows and more else None,
        # Came from a cursor: the rows before this page are at least the one it named.
        prev_cursor=cursor_of(rows[0]) if rows and position else None,
    )


def capped_count(query: Select, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows `query` matches, counting at most `cap`: (count, exact)."""
    limited = query.order_by(None).limit(cap + 1).subquery()
    count = db.session.scalar(select(func.count()).select_from(limited)) or 0
    return min(count, cap), count <= cap
