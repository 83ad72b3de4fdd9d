"""SQL constructs that differ by dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def dialect_insert(table: Any, bind: Connection | Session) -> Any:
    """An INSERT with `on_conflict_do_nothing` / `_do_update` for the bind's database."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return INSERTS[dialect.name](table)
