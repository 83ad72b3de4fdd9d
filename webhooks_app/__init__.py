"""MercadoPago webhook reliability service: the application factory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from . import ingest, login_throttle, queueing, security, tracing
from .config import PROJECT_ROOT, Config, ConfigError, config_class, retired_settings_in_use
from .extensions import db, migrate
from .logging_setup import configure_logging

__all__ = ["ConfigError", "create_app"]


def create_app(
    config: type[Config] | str | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app.

    `config` is a Config class or an APP_ENV name (default: APP_ENV's class);
    a mapping in its place, or `overrides`, replaces single settings.
    """
    if isinstance(config, Mapping):
        overrides, config = config, None
    overrides = overrides or {}
    if config is None or isinstance(config, str):
        config = config_class(config)

    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(config)
    app.config.update(overrides)
    config.validate(app.config)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _prepare_sqlite(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    queueing.init_app(app)
    login_throttle.init_app(app)
    ingest.init_app(app)
    configure_logging(app)
    for warning in retired_settings_in_use():
        app.logger.warning(warning)
    tracing.init_app(app)
    security.init_app(app)

    from . import cli
    from .blueprints import admin, api, dashboard, health, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    admin.init_app(app)
    dashboard.init_app(app)
    cli.init_app(app)

    @app.errorhandler(HTTPException)
    def json_http_error(exc: HTTPException):
        """Errors on the JSON surfaces are JSON, with a message."""
        if request.path.startswith(("/webhooks", "/api")):
            return jsonify({"error": exc.description}), exc.code
        return exc

    return app


def _prepare_sqlite(app: Flask) -> None:
    """Make the SQLite file's folder, and let several processes share the file safely."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    path = uri.removeprefix("sqlite:///")
    if path and path != uri and not path.startswith(":memory:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # How long a writer waits for another process's write lock before giving up.
    options.setdefault("connect_args", {"timeout": app.config["SQLITE_BUSY_TIMEOUT"]})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options

    if not getattr(_prepare_sqlite, "_listening", False):

        @event.listens_for(Engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            if type(dbapi_connection).__module__.startswith("sqlite3"):
                cursor = dbapi_connection.cursor()
                # WAL: readers do not block the writer (web, worker and scheduler share the file).
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

        _prepare_sqlite._listening = True  # type: ignore[attr-defined]
