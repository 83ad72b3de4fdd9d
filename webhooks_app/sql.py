"""SQL constructs that differ by dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from .extensions import PINNED_CONNECTION

INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def dialect_insert(table: Any, bind: Connection | Session) -> Any:
    """An INSERT with `on_conflict_do_nothing` / `_do_update` for the bind's database."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return INSERTS[dialect.name](table)


def composes_writes(session: Session) -> bool:
    """Whether the session's database runs several writes as one statement (`WITH … UPDATE`).

    PostgreSQL does; SQLite does not (its `WITH` takes only a SELECT).
    """
    return session.get_bind().dialect.name == "postgresql"


def execute_alone(session: Session, statement: Any, params: dict[str, Any]) -> Row[Any] | None:
    """Run one statement as a transaction of its own and return its first row, if any.

    In autocommit on the session's pinned connection (see extensions.Session): one
    round trip, where a transaction costs three with psycopg (its BEGIN, the statement,
    the COMMIT). The session must have no transaction open. Outside a job, with no
    pinned connection, a connection of its own is used.
    """
    pinned = session.info.get(PINNED_CONNECTION)
    if pinned is not None:
        return _autocommit(pinned, statement, params)
    with session.get_bind().connect() as connection:
        return _autocommit(connection, statement, params)


def _autocommit(connection: Connection, statement: Any, params: dict[str, Any]) -> Row[Any] | None:
    if connection.in_transaction():
        raise RuntimeError("execute_alone() needs a connection with no transaction open")
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with connection.begin():  # SQLAlchemy's own transaction: no BEGIN or COMMIT is sent
            result = connection.execute(statement, params)
            return result.first() if result.returns_rows else None
    finally:
        connection.execution_options(isolation_level=connection.default_isolation_level)
