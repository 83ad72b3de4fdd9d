"""Retention: old finished events lose their stored copies, in bounded batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import add_event, add_payment
from sqlalchemy import event as sa_event
from sqlalchemy import text, update

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookAttempt, WebhookEvent
from webhooks_app.periodic import build_tasks
from webhooks_app.queueing import get_redis
from webhooks_app.retention import next_round_in, purge
from webhooks_app.retention_batch import next_batch_sql, postgresql_batch_sql
from webhooks_app.timeutil import utcnow

from conftest import api_headers, dead_letter, drain, post_webhook

pytestmark = pytest.mark.timeout(60)


def age(event_ids: list[int], days: float) -> None:
    """Move these events (and their payments) `days` into the past, as if that old."""
    then = utcnow() - timedelta(days=days)
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(event_ids))
        .values(received_at=then, processed_at=then)
    )
    payment_ids = db.session.scalars(
        db.select(WebhookEvent.payment_id).where(WebhookEvent.id.in_(event_ids))
    ).all()
    db.session.execute(
        update(Payment).where(Payment.id.in_([p for p in payment_ids if p])).values(updated_at=then)
    )
    db.session.commit()


def processed(app, client, sandbox, *, retried: bool = False) -> int:
    """A `success` event through the real pipeline (one failed attempt first if `retried`)."""
    payment = sandbox.state.add_payment()
    if retried:
        sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=1)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    drain(app)
    return event_id


def test_purge_drops_the_copies_keeps_the_facts_and_leaves_failed_and_recent_alone(
    app, client, sandbox, runner
):
    old = processed(app, client, sandbox, retried=True)
    recent = processed(app, client, sandbox)
    (failed,) = dead_letter(app, client, sandbox, 1)
    ignored = client.post("/webhooks/mp?topic=point_integration_wh&id=77").json["event_id"]
    drain(app)
    age([old, failed, ignored], days=100)
    before = {e.id: (e.payload, e.headers, e.raw_body) for e in db.session.query(WebhookEvent)}

    dry = runner.invoke(args=["webhooks", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would purge 2 event(s)" in dry.output
    db.session.expire_all()
    assert {e.id: (e.payload, e.headers, e.raw_body) for e in db.session.query(WebhookEvent)} == (
        before
    )

    result = runner.invoke(args=["webhooks", "purge"])
    assert result.exit_code == 0, result.output
    assert "purged 2 event(s)" in result.output and "1 payment copy(ies) reduced" in result.output
    db.session.expire_all()
    event = db.session.get(WebhookEvent, old)
    assert (event.payload, event.raw_body, event.headers, event.query) == (None, None, None, None)
    assert event.purged_at is not None and event.status == EventStatus.SUCCESS
    assert event.attempts == 2 and event.payment is not None
    attempts = event.attempt_log
    assert [a.outcome for a in attempts] == ["retry", "success"]
    assert attempts[0].error and all(a.traceback is None for a in attempts)
    raw = event.payment.raw
    assert "payer" not in raw and raw["transaction_amount"] == 100.0
    assert {"id", "status", "status_detail", "currency_id", "date_last_updated"} <= raw.keys()
    assert event.payment.amount == 100 and event.payment.status == "approved"
    assert db.session.get(WebhookEvent, ignored).purged_at is not None

    kept_failed = db.session.get(WebhookEvent, failed)
    assert kept_failed.purged_at is None and kept_failed.payload == before[failed][0]
    assert kept_failed.attempt_log[0].traceback
    kept_recent = db.session.get(WebhookEvent, recent)
    assert kept_recent.purged_at is None and kept_recent.payload is not None
    assert "payer" in kept_recent.payment.raw

    again = runner.invoke(args=["webhooks", "purge"])
    assert "purged 0 event(s)" in again.output
    explicit = runner.invoke(args=["webhooks", "purge", "--older-than", "90d", "--include-failed"])
    assert "purged 1 event(s)" in explicit.output
    db.session.expire_all()
    assert db.session.get(WebhookEvent, failed).purged_at is not None


def test_purge_goes_in_bounded_batches_and_stops_at_its_time_budget(app):
    old = utcnow() - timedelta(days=200)
    for _ in range(25):
        add_event(status=EventStatus.SUCCESS, received_at=old, latency=1, raw_body="{}")
    postgresql = db.engine.dialect.name == "postgresql"
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith(("UPDATE WEBHOOK_EVENTS", "WITH BATCH")):
            statements.append((statement, parameters))

    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        cutoff = utcnow() - timedelta(days=90)
        first = purge(cutoff, batch_size=10, max_seconds=0)
        assert (first.events, first.batches, first.more) == (10, 1, True)
        rest = purge(cutoff, batch_size=10)
        assert (rest.events, rest.batches, rest.more) == (15, 2, False)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    # One UPDATE of the events per batch (on PostgreSQL the batch's only statement), never
    # more rows than the batch size.
    assert len(statements) == 3
    if postgresql:
        assert all(params["size"] == 10 for _, params in statements)
    else:  # the ids, plus the 2 statuses' binds
        assert max(len(params) for _, params in statements) <= 10 + 6
    assert db.session.query(WebhookEvent).filter(WebhookEvent.purged_at.is_(None)).count() == 0


def test_the_purge_query_is_served_by_its_partial_index(app):
    add_event(status=EventStatus.SUCCESS, received_at=utcnow() - timedelta(days=200), latency=1)
    now = utcnow()
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            params = {"cutoff": now.isoformat(sep=" "), "size": 500}
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + next_batch_sql("sqlite")), params)
            plan = " ".join(str(row) for row in rows)
            assert "TEMP B-TREE" not in plan, plan
        else:
            # Tiny tables are read whole; what matters is that the index can serve the batch.
            conn.execute(text("SET enable_seqscan = off"))
            params = {"cutoff": now, "before": now, "now": now, "size": 500}
            sql = "EXPLAIN " + postgresql_batch_sql()
            lines = [row[0] for row in conn.execute(text(sql), params)]
            plan = "\n".join(lines)
            batch = plan[plan.index("CTE batch") : plan.index("CTE purged")]
            assert "Sort" not in batch and "Seq Scan" not in plan, plan
    assert "ix_webhook_events_purge_due" in plan, plan


def test_the_scheduler_runs_retention_and_the_api_says_purged(app, client, sandbox):
    event_id = processed(app, client, sandbox)
    age([event_id], days=91)
    app.config["RETENTION_DAYS"] = 90
    (task,) = [t for t in build_tasks(app, get_redis(app)) if t.name == "retention"]
    assert task.interval == app.config["RETENTION_INTERVAL"]
    report = task.run()
    assert report.events == 1
    detail = client.get(f"/api/webhook-events/{event_id}", headers=api_headers()).json
    assert detail["purged_at"] and detail["payload"] is None and detail["headers"] is None
    app.config["RETENTION_DAYS"] = 0
    assert "retention" not in [t.name for t in build_tasks(app, get_redis(app))]


def test_a_payment_updated_since_the_cutoff_keeps_its_copy(app):
    payment = add_payment(1234, raw={"id": 1234, "payer": {"email": "a@example.com"}})
    old = utcnow() - timedelta(days=200)
    add_event(status=EventStatus.SUCCESS, received_at=old, latency=1, payment_id=payment.id)
    report = purge(utcnow() - timedelta(days=90))
    assert (report.events, report.payments) == (1, 0)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).raw["payer"]["email"] == "a@example.com"
    assert db.session.query(WebhookAttempt).count() == 0
