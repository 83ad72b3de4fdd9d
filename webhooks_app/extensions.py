"""Extension objects, created here and initialised in the application factory."""

from __future__ import annotations

from typing import Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints so that Alembic can alter them later, on SQLite too.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Key of `Session.info` holding the connection a session is pinned to (see attempts.job_session).
PINNED_CONNECTION = "pinned_connection"


class Session(FlaskSession):
    """Flask-SQLAlchemy's session, which can be pinned to one connection.

    Flask-SQLAlchemy's `get_bind` always answers with the engine, so a session
    checks a connection out of the pool (and pre-pings it) for each transaction;
    a session whose `info` holds a connection uses that one for all of them.
    """

    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: Engine | Connection | None = None,
        **kwargs: Any,
    ) -> Engine | Connection:
        pinned = self.info.get(PINNED_CONNECTION)
        if bind is None and pinned is not None:
            return pinned
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


db = SQLAlchemy(model_class=Base, session_options={"class_": Session})
migrate = Migrate()
# CSRF tokens for the admin's forms; checked only where the admin asks (see blueprints/admin.py).
csrf = CSRFProtect()
