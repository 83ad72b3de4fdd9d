"""`/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus)."""

from __future__ import annotations

import logging

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from redis import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..auth import bearer_ok
from ..extensions import db
from ..queueing import get_redis

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers. Checks nothing else, on purpose."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database and Redis answer and the schema is at the newest migration."""
    checks: dict[str, str] = {}
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(connection).get_current_heads())
        heads = _migration_heads()
        checks["database"] = "ok"
        checks["migrations"] = (
            "ok" if current == heads else f"at {sorted(current) or 'none'}, head is {sorted(heads)}"
        )
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    if not ready:
        logger.warning("not ready: %s", checks)
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), (
        200 if ready else 503
    )


@bp.get("/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    """Prometheus metrics of every process; needs `Authorization: Bearer <API_TOKEN>`."""
    token = current_app.config.get("API_TOKEN")
    if not token:
        return jsonify({"error": "metrics are disabled: set API_TOKEN to enable them"}), 503
    if not bearer_ok(request, token):
        response = jsonify({"error": "missing or invalid API token"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response, 401
    body, content_type = metrics.render(current_app._get_current_object())
    return Response(body, content_type=content_type)


def _migration_heads() -> set[str]:
    """The newest revisions in migrations/ (read once per process)."""
    extensions = current_app.extensions
    if "migration_heads" not in extensions:
        config = extensions["migrate"].migrate.get_config()
        extensions["migration_heads"] = set(ScriptDirectory.from_config(config).get_heads())
    return extensions["migration_heads"]
