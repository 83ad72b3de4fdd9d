"""One retention batch: the next due events lose their stored copies, in one transaction.

The batch is the next `size` events of the partial index `ix_webhook_events_purge_due`
(finished, not purged, by `processed_at`); a purged row leaves the index, so no row
is visited twice and no batch scans the table. With the events go their attempts'
tracebacks, and the stored copy (`raw`) of each row they wrote in a table of
personal_data.PERSONAL_TABLES (a payment, a subscription …) is reduced to its kept
fields, unless that row was written since the cutoff (then a later event wrote it,
and that event's purge reduces it).

A batch may be limited to some accounts (`AccountScope`: `account_id IN (…)` or
`NOT IN (…)`, for accounts with a retention of their own): a filter on the rows the
same index scan reads, the partial index's predicate left word for word.

On PostgreSQL a batch is one statement (data-modifying CTEs): no row travels to
Python and back, the copies are reduced by the server (`json_each`), and a copy
with nothing left to drop is not rewritten. On SQLite it is a few statements in
one transaction, the copies reduced in Python.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, bindparam, null, select, text, update

from .extensions import db
from .models import PURGE_DUE, WebhookAttempt, WebhookEvent
from .personal_data import PERSONAL_TABLES, PersonalTable
from .pii import reduce_raw
from .sql import dialect_name
from .timeutil import utcnow

_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__
# A row is reduced with the purge of an event that wrote it unless it was written later
# than this after the cutoff: the slack covers the attempt's own writes, which land a
# little after its `processed_at` (the GHL fields) or before it (a retried attempt's upsert).
COPY_SLACK = timedelta(hours=1)
# What a purge drops from an event; SQL NULL (a JSON column would store None as 'null').
EVENT_COPIES = {"raw_body": null(), "payload": null(), "headers": null(), "query": null()}
# `purge --include-failed`: the same, failed events too (not served by the partial index).
PURGE_DUE_WITH_FAILED = "purged_at IS NULL AND status IN ('success', 'ignored', 'failed')"
_NAME = re.compile(r"[a-z_]+")


@dataclass(frozen=True)
class AccountScope:
    """The accounts a purge is for: those in `ids`, or with `exclude` all but those."""

    ids: tuple[int, ...]
    exclude: bool = False

    def sql(self) -> str:
        """The condition on `account_id`, with the expanding parameter `:account_ids`."""
        return f" AND account_id {'NOT IN' if self.exclude else 'IN'} :account_ids"


def _scope_sql(scope: AccountScope | None) -> str:
    return scope.sql() if scope is not None else ""


def _scope_kind(scope: AccountScope | None) -> str | None:
    return None if scope is None else ("exclude" if scope.exclude else "include")


@dataclass
class BatchResult:
    """What one batch did: events selected and purged, tracebacks dropped, copies reduced."""

    selected: int = 0
    events: int = 0
    attempts: int = 0
    reduced: dict[str, int] = field(default_factory=dict)  # by table name


def purge_batch(
    cutoff: datetime,
    size: int,
    *,
    include_failed: bool = False,
    now: datetime | None = None,
    accounts: AccountScope | None = None,
) -> BatchResult:
    """Purge the next `size` due events (finished before `cutoff`, of `accounts` if given)
    and commit."""
    params: dict[str, Any] = {
        "cutoff": cutoff,
        "size": size,
        "now": now or utcnow(),
        "before": cutoff + COPY_SLACK,
    }
    if accounts is not None:
        params["account_ids"] = list(accounts.ids)
    if dialect_name(db.session) == "postgresql":
        statement = _postgresql_statement(include_failed, _scope_kind(accounts))
        row = db.session.execute(statement, params).one()
        result = BatchResult(row.selected, row.events, row.attempts)
        result.reduced = {spec.name: getattr(row, f"reduced_{i}") for i, spec in _linked_tables()}
    else:
        result = _sqlite_batch(params, include_failed, accounts)
    db.session.commit()
    return result


def _linked_tables() -> list[tuple[int, PersonalTable]]:
    """The tables whose rows events write, with a copy to reduce."""
    return [
        (i, spec)
        for i, spec in enumerate(PERSONAL_TABLES)
        if spec.event_link is not None and spec.raw is not None
    ]


def _names(*names: str) -> str:
    """Constants of personal_data spliced into SQL: checked to be plain names."""
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain SQL name: {name!r}")
    return ", ".join(f"'{name}'" for name in names)


@functools.cache
def _postgresql_statement(include_failed: bool, scope: str | None = None) -> Any:
    """The whole batch as one statement; returns the counts. `scope`: None, or whether the
    accounts `:account_ids` are the ones to `include` or to `exclude`."""
    due = PURGE_DUE_WITH_FAILED if include_failed else PURGE_DUE
    accounts = _scope_sql(None if scope is None else AccountScope((), scope == "exclude"))
    ctes = [
        # The partial index's predicate word for word, so that the planner uses it.
        f"batch AS (SELECT id FROM webhook_events WHERE {due} AND processed_at < :cutoff"
        f"{accounts} ORDER BY processed_at LIMIT :size)",
        # Still due (re-checked on the row as locked): a replay in between keeps its copies.
        "purged AS (UPDATE webhook_events AS e SET raw_body = NULL, payload = NULL, "
        f"headers = NULL, query = NULL, purged_at = :now FROM batch WHERE e.id = batch.id "
        f"AND {due} AND processed_at < :cutoff "
        "RETURNING e.id, e.payment_id, e.type, e.resource_id)",
        "tracebacks AS (UPDATE webhook_attempts AS a SET traceback = NULL FROM purged "
        "WHERE a.event_id = purged.id AND a.traceback IS NOT NULL RETURNING a.id)",
    ]
    counts = [
        "(SELECT count(*) FROM batch) AS selected",
        "(SELECT count(*) FROM purged) AS events",
        "(SELECT count(*) FROM tracebacks) AS attempts",
    ]
    for i, spec in _linked_tables():
        ctes.append(f"reduced_{i} AS ({_postgresql_reduce(spec)})")
        counts.append(f"(SELECT count(*) FROM reduced_{i}) AS reduced_{i}")
    sql = "WITH " + ",\n".join(ctes) + "\nSELECT " + ", ".join(counts)
    params = [
        bindparam("cutoff", type_=DateTime),
        bindparam("before", type_=DateTime),
        bindparam("now", type_=DateTime),
        bindparam("size", type_=Integer),
    ]
    if scope is not None:
        params.append(bindparam("account_ids", expanding=True))
    return text(sql).bindparams(*params)


def _postgresql_reduce(spec: PersonalTable) -> str:
    """UPDATE reducing the copies of `spec`'s rows the purged events wrote (updated_at kept)."""
    link = spec.event_link
    assert link is not None and spec.raw is not None
    _names(spec.name, spec.raw, link.column, link.event_column)
    kept = f"ARRAY[{_names(*spec.kept)}]::text[]"
    linked = f"SELECT {link.event_column} FROM purged"
    if link.topics:
        linked += f" WHERE type IN ({_names(*link.topics)})"
    raw = f"t.{spec.raw}"
    return (
        f"UPDATE {spec.name} AS t SET {spec.raw} = (SELECT coalesce(json_object_agg(f.key, "
        f"f.value), '{{}}'::json) FROM json_each({raw}) AS f WHERE f.key = ANY({kept})) "
        f"WHERE t.{link.column} IN ({linked}) AND t.updated_at < :before "
        f"AND json_typeof({raw}) = 'object' "
        # Nothing to drop (already reduced by an earlier event's purge): not rewritten.
        f"AND EXISTS (SELECT FROM json_object_keys({raw}) AS k WHERE k <> ALL({kept})) "
        "RETURNING t.id"
    )


def next_batch_sql(dialect: str, accounts: AccountScope | None = None) -> str:
    """SQLite's next batch: one range scan of the partial index, in `processed_at` order.

    Its planner, without statistics, prefers (status, received_at) and a sort:
    `INDEXED BY` names the index (SQLAlchemy renders no table hints for SQLite).
    """
    hint = " INDEXED BY ix_webhook_events_purge_due" if dialect == "sqlite" else ""
    return (
        f"SELECT id, payment_id, type, resource_id FROM webhook_events{hint} WHERE {PURGE_DUE} "
        f"AND processed_at < :cutoff{_scope_sql(accounts)} ORDER BY processed_at LIMIT :size"
    )


def postgresql_batch_sql() -> str:
    """The PostgreSQL batch statement's text (for EXPLAIN)."""
    return str(_postgresql_statement(False))


def _sqlite_batch(
    params: dict[str, Any], include_failed: bool, accounts: AccountScope | None
) -> BatchResult:
    due = text(PURGE_DUE_WITH_FAILED if include_failed else PURGE_DUE)
    if include_failed:
        sql = next_batch_sql("", accounts).replace(PURGE_DUE, PURGE_DUE_WITH_FAILED)
    else:
        sql = next_batch_sql("sqlite", accounts)
    query = text(sql)
    selecting = {"cutoff": params["cutoff"], "size": params["size"]}
    if accounts is not None:
        query = query.bindparams(bindparam("account_ids", expanding=True))
        selecting["account_ids"] = params["account_ids"]
    rows = db.session.execute(query, selecting).all()
    result = BatchResult(selected=len(rows))
    if not rows:
        return result
    ids = [row.id for row in rows]
    result.events = db.session.execute(
        update(_events)
        .where(_events.c.id.in_(ids), due, _events.c.processed_at < params["cutoff"])
        .values(**EVENT_COPIES, purged_at=params["now"], updated_at=_events.c.updated_at)
    ).rowcount
    result.attempts = db.session.execute(
        update(_attempts)
        .where(_attempts.c.event_id.in_(ids), _attempts.c.traceback.is_not(None))
        .values(traceback=null())
    ).rowcount
    for _, spec in _linked_tables():
        link = spec.event_link
        assert link is not None
        keys = {
            getattr(row, link.event_column)
            for row in rows
            if not link.topics or row.type in link.topics
        }
        keys.discard(None)
        result.reduced[spec.name] = reduce_copies(spec, sorted(keys), before=params["before"])
    return result


def reduce_copies(spec: PersonalTable, keys: list[Any], *, before: datetime) -> int:
    """Reduce the copies of `spec`'s rows that events named by `keys` (its event link's
    column) wrote, those not written since `before`; return how many changed. Leaves the
    transaction open."""
    link = spec.event_link
    if not keys or spec.raw is None or link is None:
        return 0
    table, raw = spec.table, spec.column(spec.raw)
    query = select(table.c.id, raw).where(spec.column(link.column).in_(keys))
    query = query.where(table.c.updated_at < before)
    changes = [
        {"reduced_id": row.id, "reduced_raw": reduced}
        for row in db.session.execute(query)
        if (reduced := reduce_raw(row[1], spec.kept)) is not None and reduced != row[1]
    ]
    if changes:
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("reduced_id"))
            # updated_at kept: listings are ordered by it, and nothing MercadoPago said changed.
            .values({spec.raw: bindparam("reduced_raw"), "updated_at": table.c.updated_at}),
            changes,
        )
    return len(changes)
