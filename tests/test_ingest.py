"""Storing notifications: group commit of concurrent requests, duplicates, failures."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from webhooks_app.extensions import db
from webhooks_app.ingest import EventWriter, StoredEvent, store_event
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.notifications import Notification
from webhooks_app.queueing import get_queue, job_id

from conftest import make_app


def make_notification(webhook_id: str | None = None, **fields) -> Notification:
    webhook_id = webhook_id or f"mp:{uuid.uuid4().int % 10**12}"
    values = {
        "source": "webhook",
        "webhook_id": webhook_id,
        "type": "payment",
        "action": "payment.updated",
        "resource_id": "123",
        "payload": {"id": webhook_id, "data": {"id": "123"}},
        "raw_body": "{}",
        "headers": {"x-request-id": webhook_id},
        "query": {"data.id": "123", "type": "payment"},
    }
    values.update(fields)
    return Notification(**values)


@contextmanager
def inserts_counted(app: Flask) -> Iterator[list[str]]:
    """Collect the INSERT statements sent on the app's engine inside the block."""
    counted: list[str] = []
    engine = db.engine

    def on_execute(_connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            counted.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


@contextmanager
def writes_blocked() -> Iterator[None]:
    """Hold the table's write lock from another connection until the block ends."""
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        if db.engine.dialect.name == "sqlite":
            connection.driver_connection.isolation_level = None  # we say BEGIN ourselves
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("LOCK TABLE webhook_events IN SHARE MODE")
        yield
    finally:
        connection.rollback()
        connection.invalidate()  # not back to the pool: its settings were changed


def store_as_one_batch(
    app: Flask, notifications: list[Notification]
) -> list[StoredEvent | BaseException | None]:
    """Store each notification from its own thread, as concurrent requests would.

    The table is locked meanwhile, so the first request leads and waits with its
    own row while all the others queue behind it: they are stored together next.
    Returns each one's outcome (a StoredEvent, or the exception it raised).
    """
    writer: EventWriter = app.extensions["event_writer"]
    results: list[StoredEvent | BaseException | None] = [None] * len(notifications)

    def store(index: int) -> None:
        with app.app_context():
            try:
                results[index] = store_event(notifications[index])
            except Exception as exc:  # noqa: BLE001 - handed back to the test to check
                results[index] = exc

    threads = [threading.Thread(target=store, args=(i,)) for i in range(len(notifications))]
    with writes_blocked():
        for thread in threads:
            thread.start()
        wait_until(lambda: len(writer._queue) == len(notifications) - 1)
    for thread in threads:
        thread.join(timeout=30)
    return results


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_new_notification_is_committed_and_its_first_attempt_queued(app):
    stored = store_event(make_notification("mp:1"))
    assert stored.created and stored.queued
    event_row = db.session.get(WebhookEvent, stored.id)
    assert event_row.webhook_id == "mp:1" and event_row.status == EventStatus.PENDING
    assert get_queue(app).job_ids == [job_id(stored.id, 1)]


def test_a_redelivery_returns_the_stored_event_and_queues_nothing(app):
    first = store_event(make_notification("mp:2"))
    again = store_event(make_notification("mp:2"))
    assert again == StoredEvent(first.id, created=False, queued=False)
    assert get_queue(app).job_ids == [job_id(first.id, 1)]


def test_concurrent_requests_share_one_insert(app):
    notifications = [make_notification() for _ in range(12)]
    # The second copy of one notification arrives in the same batch as the first.
    notifications.append(notifications[5])
    with inserts_counted(app) as inserts:
        results = store_as_one_batch(app, notifications)

    assert all(isinstance(result, StoredEvent) for result in results), results
    assert len(inserts) == 2  # the leader's own row, then everybody else's
    by_webhook: dict[str, list[StoredEvent]] = {}
    for notification, result in zip(notifications, results, strict=True):
        by_webhook.setdefault(notification.webhook_id, []).append(result)
    assert len(by_webhook) == 12
    twice = by_webhook[notifications[5].webhook_id]
    assert sorted(r.created for r in twice) == [False, True] and twice[0].id == twice[1].id
    stored = db.session.scalar(select(func.count()).select_from(WebhookEvent))
    assert stored == 12
    assert len(get_queue(app).job_ids) == 12


def test_one_bad_notification_does_not_fail_the_rest_of_its_batch(app):
    good = [make_notification() for _ in range(4)]
    bad = make_notification(type=None)  # NOT NULL: the database refuses it
    results = store_as_one_batch(app, [good[0], good[1], bad, good[2], good[3]])

    failed = [r for r in results if not isinstance(r, StoredEvent)]
    assert len(failed) == 1 and results[2] is failed[0]
    assert all(r.created and r.queued for r in results if isinstance(r, StoredEvent))
    stored = db.session.scalars(select(WebhookEvent.webhook_id)).all()
    assert sorted(stored) == sorted(n.webhook_id for n in good)


def test_with_redis_down_the_event_is_stored_pending_and_due(sandbox, app):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        stored = store_event(make_notification("mp:3"))
        assert stored.created and not stored.queued
        event_row = db.session.get(WebhookEvent, stored.id)
        assert event_row.status == EventStatus.PENDING and event_row.next_retry_at is not None


@pytest.mark.parametrize("max_batch", [1, 3])
def test_batches_never_exceed_the_configured_size(sandbox, app, max_batch):
    capped = make_app(sandbox, INGEST_MAX_BATCH=max_batch)
    notifications = [make_notification() for _ in range(7)]
    with capped.app_context(), inserts_counted(capped) as inserts:
        results = store_as_one_batch(capped, notifications)
    assert all(isinstance(result, StoredEvent) and result.created for result in results)
    # The leader's own row, then the six others in batches of at most max_batch.
    assert len(inserts) == 1 + -(-6 // max_batch)


def test_the_writers_connection_goes_back_to_the_pool_when_nobody_waits(app):
    store_as_one_batch(app, [make_notification() for _ in range(5)])
    assert db.engine.pool.checkedout() == 0
    assert app.extensions["event_writer"]._connection is None


def test_a_dead_kept_connection_is_replaced_without_failing_the_batch(app):
    """What the pool's pre-ping does for a checkout, for the connection passed between writers."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs a server that can drop a connection")
    writer: EventWriter = app.extensions["event_writer"]
    kept = writer._connect()
    with kept.begin():
        pid = kept.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with db.engine.connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    stored = store_event(make_notification("mp:after-restart"))
    assert stored.created and stored.queued
    assert db.session.get(WebhookEvent, stored.id).webhook_id == "mp:after-restart"
