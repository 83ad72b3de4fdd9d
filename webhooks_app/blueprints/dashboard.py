"""rq-dashboard mounted at `/rq`, on the app's Redis, behind the admin's Basic auth."""

from __future__ import annotations

import logging

import rq_dashboard
from flask import Flask, Response, request
from flask.typing import ResponseReturnValue
from rq_dashboard.web import setup_rq_connection

from ..auth import UNSAFE_METHODS, require_admin, same_origin
from ..queueing import make_redis

logger = logging.getLogger(__name__)

URL_PREFIX = "/rq"
BLUEPRINT_NAME = rq_dashboard.blueprint.name
# Seconds; longer than the request path's: listing a big registry takes a moment.
DASHBOARD_REDIS_TIMEOUT = 5.0
# Every rq-dashboard 0.9.0 route that changes something (rq_dashboard/web.py).
STATE_CHANGING_ENDPOINTS = frozenset(
    f"{BLUEPRINT_NAME}.{view}"
    for view in (
        "delete_job_view",
        "requeue_job_view",
        "requeue_all",
        "empty_queue",
        "compact_queue",
    )
)


def init_app(app: Flask) -> None:
    """Mount rq-dashboard, pointed at REDIS_URL, with the admin's authentication."""
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    # rq-dashboard 0.9 connects here (its own before_app_first_request is gone).
    setup_rq_connection(app)
    # Its client has no timeouts: a Redis that stops answering would hang a web worker.
    connection = make_redis(app.config["REDIS_URL"], DASHBOARD_REDIS_TIMEOUT)
    app.redis_conn = connection  # type: ignore[attr-defined]
    # An app-level hook, not one on rq-dashboard's module-global blueprint: Flask
    # refuses hooks added to a blueprint once registered, and every app (each
    # test) registers the same blueprint object again. App hooks run first.
    app.before_request(_protect_dashboard)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)


def _protect_dashboard() -> ResponseReturnValue | None:
    if request.blueprint != BLUEPRINT_NAME:
        return None
    denied = require_admin()
    if denied is not None:
        return denied
    # rq-dashboard 0.9 also requeues on GET: an <img src> on any site would do it.
    if request.endpoint in STATE_CHANGING_ENDPOINTS and request.method != "POST":
        return Response("Use POST.", 405, {"Allow": "POST"}, mimetype="text/plain")
    # rq-dashboard's buttons POST with jQuery and no CSRF token: refuse cross-site ones.
    if request.method in UNSAFE_METHODS and not same_origin():
        logger.warning("refused a cross-site %s to %s", request.method, request.path)
        return Response("Cross-site request refused.", 403, mimetype="text/plain")
    return None
