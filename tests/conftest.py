"""Shared fixtures: a real database (SQLite or PostgreSQL), real Redis, the real sandbox.

The database comes from TEST_DATABASE_URL (default: a SQLite file under
instance/); Redis from TEST_REDIS_URL (default db 15 of the local server,
flushed before every test).
"""

from __future__ import annotations

import os
import tempfile

# Prometheus' multiprocess mode needs its directory before anything imports the app;
# the test run's own, shared with the processes the tests start.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="webhooks-metrics-"))

import time  # noqa: E402
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import text

from webhooks_app import create_app
from webhooks_app.config import TestingConfig
from webhooks_app.extensions import db
from webhooks_app.fair_worker import make_worker
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_redis, get_scheduler
from webhooks_app.sandbox import SandboxServer
from webhooks_app.signatures import sign

WEBHOOK_SECRET = TestingConfig.MP_WEBHOOK_SECRET
API_TOKEN = TestingConfig.API_TOKEN
TABLES = (
    "webhook_attempts",
    "webhook_events",
    "merchant_order_payments",
    "merchant_orders",
    "chargebacks",
    "payments",
    "authorized_payments",
    "subscriptions",
    "mp_alerts",
    "erasures",
    "processing_pauses",
    "processing_pause_log",
)

# Accounts a test (or the API's schemathesis run) created or changed do not outlive it:
# the default account goes back to its migration's state (the environment's settings).
RESET_ACCOUNTS = "DELETE FROM accounts WHERE id <> 1"
RESET_DEFAULT_ACCOUNT = (
    "UPDATE accounts SET slug = 'default', name = 'Default account', enabled = TRUE, "
    "mp_access_token_encrypted = NULL, mp_webhook_secret_encrypted = NULL, "
    "ghl_location_id = NULL, ghl_api_token_encrypted = NULL, status_tags = NULL, "
    "tag_mode = NULL, custom_fields = NULL, retention_days = NULL, api_token_hash = NULL "
    "WHERE id = 1"
)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The sandbox, with empty state for this test."""
    sandbox_server.state.reset()
    sandbox_server.state.access_token = None
    return sandbox_server


def make_app(sandbox: SandboxServer, **overrides: Any) -> Flask:
    """A testing app whose API clients talk to the sandbox."""
    settings = {"MP_API_BASE_URL": sandbox.url, "GHL_API_BASE_URL": sandbox.url, **overrides}
    return create_app(TestingConfig, settings)


@pytest.fixture(scope="session")
def _schema(sandbox_server: SandboxServer) -> None:
    """Build the schema once per run with the real migrations, from nothing."""
    uri = TestingConfig.SQLALCHEMY_DATABASE_URI
    if uri.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(uri.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    app = make_app(sandbox_server)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        upgrade()


@pytest.fixture
def app(sandbox: SandboxServer, _schema: None) -> Iterator[Flask]:
    """An app on the test database and Redis, talking to the sandbox; both emptied first."""
    app = make_app(sandbox)
    with app.app_context():
        with db.engine.begin() as connection:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))
            connection.execute(text(RESET_ACCOUNTS))
            connection.execute(text(RESET_DEFAULT_ACCOUNT))
        # Its own client: the app's fails fast (REDIS_SOCKET_TIMEOUT, 0.5 s), and emptying a
        # database a heavy test filled can take longer than that on a loaded machine.
        with Redis.from_url(app.config["REDIS_URL"], socket_timeout=30) as redis:
            redis.flushdb()
        yield app
        db.session.remove()
        # Each test's app has its own engine: give its connections back now rather than at
        # garbage collection (PostgreSQL allows 100, shared by every run on the machine).
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def notification(
    payment_id: str | int,
    *,
    notification_id: int | None = None,
    action: str = "payment.updated",
    live_mode: bool = True,
) -> dict[str, Any]:
    """A MercadoPago Webhooks-form body (`live_mode: false` is the panel's "Simular")."""
    return {
        "id": notification_id if notification_id is not None else uuid.uuid4().int % 10**12,
        "live_mode": live_mode,
        "type": "payment",
        "date_created": "2026-11-29T10:00:00.000-04:00",
        "api_version": "v1",
        "action": action,
        "data": {"id": str(payment_id)},
    }


def post_webhook(
    client: FlaskClient,
    payment_id: str | int,
    *,
    body: dict[str, Any] | None = None,
    secret: str | None = WEBHOOK_SECRET,
    request_id: str | None = None,
    **kwargs: Any,
):
    """POST a signed Webhooks-form notification, as MercadoPago does."""
    body = body if body is not None else notification(payment_id, **kwargs)
    request_id = request_id or str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    if secret:
        headers["x-signature"] = sign(secret, str(payment_id), request_id)
    return client.post(
        f"/webhooks/mp?data.id={payment_id}&type=payment", json=body, headers=headers
    )


def post_topic(
    client,
    event_type: str,
    resource_id,
    *,
    notification_id: int | None = None,
    live_mode: bool = True,
):
    """A signed Webhooks-form notification of `event_type` about `resource_id`
    (`live_mode: false`: the panel's "Simular")."""
    resource_id = str(resource_id)
    request_id = str(uuid.uuid4())
    body = {
        "id": notification_id or uuid.uuid4().int % 10**12,
        "live_mode": live_mode,
        "type": event_type,
        "date_created": "2026-11-29T10:00:00.000-04:00",
        "api_version": "v1",
        "action": f"{event_type}.updated",
        "data": {"id": resource_id},
    }
    headers = {
        "x-request-id": request_id,
        "x-signature": sign(WEBHOOK_SECRET, resource_id, request_id),
    }
    return client.post(
        f"/webhooks/mp?data.id={resource_id}&type={event_type}", json=body, headers=headers
    )


def run_worker(app: Flask) -> None:
    """Run every queued job in this process (RQ's SimpleWorker, burst mode), on every
    account's queue behind the priority queue, as worker.py."""
    make_worker(app, SimpleWorker, get_redis(app)).work(burst=True)


def drain(app: Flask, timeout: float = 30.0, until: Callable[[], bool] | None = None) -> None:
    """Work the queue and the scheduler until no event is pending/processing (or `until`)."""
    scheduler = get_scheduler(app)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduler.enqueue_jobs()
        run_worker(app)
        db.session.remove()
        if until is not None:
            if until():
                return
        elif (
            not db.session.query(WebhookEvent)
            .filter(WebhookEvent.status.in_([EventStatus.PENDING, EventStatus.PROCESSING]))
            .count()
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"events still unfinished after {timeout}s")


def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def events(event_type: str | None = None) -> list[WebhookEvent]:
    """Every stored event (of one type, if given), oldest first, read afresh."""
    db.session.expire_all()
    query = db.session.query(WebhookEvent).order_by(WebhookEvent.id)
    if event_type:
        query = query.filter(WebhookEvent.type == event_type)
    return list(query)


def statuses() -> dict[int, str]:
    """Every stored event's status, by id, read afresh."""
    db.session.expire_all()
    return {event.id: event.status for event in db.session.query(WebhookEvent)}


def dead_letter(
    app: Flask, client: FlaskClient, sandbox, count: int, **payment_fields
) -> list[int]:
    """`count` events dead-lettered at their first attempt (MercadoPago answers 400 once)."""
    ids = []
    for _ in range(count):
        payment = sandbox.state.add_payment(**payment_fields)
        sandbox.state.set_fault("mercadopago", str(payment["id"]), status=400, times=1)
        ids.append(post_webhook(client, payment["id"]).json["event_id"])
    run_worker(app)
    assert all(statuses()[event_id] == EventStatus.FAILED for event_id in ids)
    return ids
