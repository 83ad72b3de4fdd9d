"""SQL constructs that differ by dialect."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, scoped_session

from .extensions import PINNED_CONNECTION

INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def dialect_name(bind: Connection | Session | scoped_session[Session]) -> str:
    """The name of the bind's database: "postgresql" or "sqlite"."""
    connectable = bind if isinstance(bind, Connection) else bind.get_bind()
    return connectable.dialect.name


def dialect_insert(table: Any, bind: Connection | Session) -> Any:
    """An INSERT with `on_conflict_do_nothing` / `_do_update` for the bind's database."""
    return INSERTS[dialect_name(bind)](table)


def never_back_in_time(
    statement: Any, *, key: Any, stamp: str, fields: Iterable[str]
) -> Any:
    """`statement` (a dialect's INSERT with its values) as an upsert that never goes back in
    time: on a conflict on the account and `key` (the MercadoPago id, unique within an
    account; the INSERT's values must name the `account_id`), `fields` are overwritten only
    when our read is as new as the stored row by the column `stamp` (MercadoPago's
    last-update date); a read or a row without a date is taken as is.

    The unique key, not a check in Python, decides who inserts when two workers race; the
    loser's read then updates the winner's row, or leaves it if it is newer.
    """
    excluded = statement.excluded
    stored = statement.table.c[stamp]
    return statement.on_conflict_do_update(
        index_elements=[statement.table.c.account_id, key],
        set_={name: excluded[name] for name in fields},
        where=or_(excluded[stamp].is_(None), stored.is_(None), stored <= excluded[stamp]),
    )


def one_statement_transactions(session: Session | scoped_session[Session]) -> bool:
    """Whether a transaction of several writes runs here as one statement in autocommit.

    On PostgreSQL: `WITH … UPDATE/INSERT …` puts the writes in one statement, and
    autocommit saves psycopg's BEGIN and COMMIT round trips. Not on SQLite, whose
    `WITH` takes only a SELECT (and which has no round trips to save).
    """
    return dialect_name(session) == "postgresql"


def execute_alone(session: Session, statement: Any, params: dict[str, Any]) -> Row[Any] | None:
    """Run one statement as a transaction of its own and return its first row, if any.

    On PostgreSQL in autocommit, on the session's pinned connection (see
    extensions.Session): one round trip, where a transaction costs three with psycopg
    (its BEGIN, the statement, the COMMIT). The session must have no transaction open;
    outside a job, with no pinned connection, a connection of its own is used. SQLite
    has no round trips to save: the statement runs in the session, which is committed.
    """
    if not one_statement_transactions(session):
        result = session.execute(statement, params)
        row = result.first() if result.returns_rows else None
        session.commit()
        return row
    pinned = session.info.get(PINNED_CONNECTION)
    if pinned is not None:
        return _autocommit(pinned, statement, params)
    with session.get_bind().connect() as connection:
        return _autocommit(connection, statement, params)


def fetch_all_alone(session: Session, statement: Any, params: dict[str, Any]) -> list[Row[Any]]:
    """Like `execute_alone`, for a SELECT: every row, in a transaction of its own."""
    if not one_statement_transactions(session):
        rows = list(session.execute(statement, params).all())
        session.commit()
        return rows
    pinned = session.info.get(PINNED_CONNECTION)
    if pinned is not None:
        return _autocommit(pinned, statement, params, every_row=True)
    with session.get_bind().connect() as connection:
        return _autocommit(connection, statement, params, every_row=True)


def _autocommit(
    connection: Connection, statement: Any, params: dict[str, Any], every_row: bool = False
) -> Any:
    if connection.in_transaction():
        raise RuntimeError("execute_alone() needs a connection with no transaction open")
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with connection.begin():  # SQLAlchemy's own transaction: no BEGIN or COMMIT is sent
            result = connection.execute(statement, params)
            if every_row:
                return list(result.all())
            return result.first() if result.returns_rows else None
    finally:
        connection.execution_options(isolation_level=connection.default_isolation_level)
