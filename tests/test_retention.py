"""Retention: old finished events lose their stored copies, in bounded batches."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from factories import add_event, add_payment
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, make_url, text, update
from sqlalchemy import event as sa_event

from webhooks_app import retention
from webhooks_app.config import ConfigError, TestingConfig
from webhooks_app.extensions import db
from webhooks_app.models import (
    EventStatus,
    MpAlert,
    Payment,
    Subscription,
    WebhookAttempt,
    WebhookEvent,
)
from webhooks_app.periodic import build_tasks
from webhooks_app.queueing import get_redis
from webhooks_app.resources import Chargeback, MerchantOrder
from webhooks_app.retention import next_round_in, purge
from webhooks_app.retention_batch import next_batch_sql, postgresql_batch_sql
from webhooks_app.timeutil import utcnow

from conftest import api_headers, dead_letter, drain, make_app, post_webhook

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
    # RETENTION_DAYS=0 and no account's own retention: a round finds nothing to do (the task
    # stays: an account given a retention of its own counts at the next round).
    app.config["RETENTION_DAYS"] = 0
    (task,) = [t for t in build_tasks(app, get_redis(app)) if t.name == "retention"]
    age([processed(app, client, sandbox)], days=400)
    assert task.run() is None


def test_a_payment_updated_since_the_cutoff_keeps_its_copy(app):
    payment = add_payment(1234, raw={"id": 1234, "payer": {"email": "a@example.com"}})
    old = utcnow() - timedelta(days=200)
    add_event(status=EventStatus.SUCCESS, received_at=old, latency=1, payment_id=payment.id)
    report = purge(utcnow() - timedelta(days=90))
    assert (report.events, report.payments) == (1, 0)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).raw["payer"]["email"] == "a@example.com"
    assert db.session.query(WebhookAttempt).count() == 0


def old_event(event_type: str, resource_id: str, **fields) -> WebhookEvent:
    """A `success` event of `event_type` about `resource_id`, finished 200 days ago."""
    then = utcnow() - timedelta(days=200)
    return add_event(
        status=EventStatus.SUCCESS,
        received_at=then,
        latency=1,
        type=event_type,
        resource_id=resource_id,
        **fields,
    )


def test_the_purge_reduces_every_table_its_events_wrote_and_only_once(app):
    then = utcnow() - timedelta(days=200)
    written = {"created_at": then, "updated_at": then}
    subscription = Subscription(
        mp_preapproval_id="sub-1", status="authorized", payer_email="rita@example.com",
        amount=Decimal("49.90"), **written,
        raw={"id": "sub-1", "status": "authorized", "payer_email": "rita@example.com",
             "payer_id": 4242, "card_id": "c1", "auto_recurring": {"transaction_amount": 49.9}},
    )  # fmt: skip
    # Written since the cutoff (updated_at: now): a later event's purge will reduce it.
    recent = Subscription(
        mp_preapproval_id="sub-2",
        payer_email="new@example.com",
        created_at=then,
        raw={"id": "sub-2", "payer_email": "new@example.com"},
    )  # fmt: skip
    order = MerchantOrder(
        mp_order_id="9001", status="closed", total_amount=Decimal("80"), **written,
        raw={"id": 9001, "status": "closed", "total_amount": 80, "payer": {"id": 77},
             "shipments": [{"receiver_address": {"street_name": "Rua A"}}],
             "payments": [{"id": 1, "status": "approved"}]},
    )  # fmt: skip
    chargeback = Chargeback(
        mp_chargeback_id="cb-1", amount=Decimal("80"), **written,
        raw={"id": "cb-1", "amount": 80, "documentation": [{"url": "https://f/rita.pdf"}]},
    )  # fmt: skip
    claim = MpAlert(
        kind=MpAlert.CLAIM, mp_resource_id="5001", status="opened", **written,
        raw={"id": 5001, "status": "opened", "players": [{"user_id": 4242}]},
    )  # fmt: skip
    db.session.add_all([subscription, recent, order, chargeback, claim])
    db.session.commit()
    old_event("subscription_preapproval", "sub-1")
    old_event("subscription_preapproval", "sub-2")
    old_event("merchant_order", "9001")
    old_event("chargebacks", "cb-1")
    old_event("topic_claims_integration_wh", "5001")
    old_event("stop_delivery_op_wh", "9001")  # a fraud alert about a payment, not the order

    report = purge(utcnow() - timedelta(days=90))
    assert report.events == 6
    assert report.reduced == {
        "payments": 0, "subscriptions": 1, "mp_alerts": 1, "merchant_orders": 1, "chargebacks": 1
    }  # fmt: skip
    assert "1 subscription copy(ies) reduced" in report.summary()
    db.session.expire_all()
    kept = db.session.get(Subscription, subscription.id)
    assert kept.raw == {
        "id": "sub-1", "status": "authorized", "auto_recurring": {"transaction_amount": 49.9}
    }  # fmt: skip
    assert kept.payer_email == "rita@example.com" and kept.amount == Decimal("49.90")
    assert kept.updated_at == then
    assert db.session.get(Subscription, recent.id).raw["payer_email"] == "new@example.com"
    order_raw = db.session.get(MerchantOrder, order.id).raw
    assert order_raw.keys() == {"id", "status", "total_amount", "payments"}
    assert order_raw["payments"] == [{"id": 1, "status": "approved"}]
    assert "documentation" not in db.session.get(Chargeback, chargeback.id).raw
    assert db.session.get(MpAlert, claim.id).raw == {"id": 5001, "status": "opened"}

    old_event("subscription_preapproval", "sub-1")  # a second old event about it
    again = purge(utcnow() - timedelta(days=90))
    assert again.events == 1 and not any(again.reduced.values())  # nothing left to drop


def test_the_purge_takes_at_most_its_duty_of_the_wall_time(app, monkeypatch):
    old = utcnow() - timedelta(days=200)
    for _ in range(12):
        add_event(status=EventStatus.SUCCESS, received_at=old, latency=1)
    spent: list[float] = []
    slept: list[float] = []
    real_batch = retention.purge_batch

    def timed_batch(*args, **kwargs):  # noqa: ANN002, ANN003
        started = time.monotonic()
        try:
            return real_batch(*args, **kwargs)
        finally:
            spent.append(time.monotonic() - started)

    monkeypatch.setattr(retention, "purge_batch", timed_batch)
    monkeypatch.setattr(retention.time, "sleep", slept.append)
    cutoff = utcnow() - timedelta(days=90)
    report = purge(cutoff, batch_size=5, duty=0.25)
    assert (report.events, report.batches) == (12, 3)
    # After each full batch, 3 times what it took (0.25 of the wall time); none after the last.
    assert len(slept) == 2
    for pause, batch in zip(slept, spent, strict=False):
        assert batch * 3 <= pause <= batch * 3 * 1.5 + 0.01
    assert sum(spent) <= report.busy <= sum(spent) + 0.01

    for _ in range(12):
        add_event(status=EventStatus.SUCCESS, received_at=old, latency=1)
    slept.clear()
    assert purge(cutoff, batch_size=5, duty=1).events == 12 and slept == []  # flat out

    for _ in range(6):
        add_event(status=EventStatus.SUCCESS, received_at=old, latency=1)
    cut = purge(cutoff, batch_size=5, duty=0.5, max_seconds=0)
    assert (cut.events, cut.more) == (5, True) and cut.rest > 0 and slept == []
    assert next_round_in(cut, 300) == cut.rest  # the pause it still owes, then the next round
    assert next_round_in(purge(cutoff, batch_size=5), 300) == 300
    assert next_round_in(None, 300) == 300


def test_scheduler_rounds_follow_each_other_while_a_backlog_remains(app):
    old = utcnow() - timedelta(days=200)
    for _ in range(12):
        add_event(status=EventStatus.SUCCESS, received_at=old, latency=1)
    app.config.update(RETENTION_BATCH_SIZE=5, RETENTION_ROUND_SECONDS=0, RETENTION_DUTY=0.5)
    (task,) = [t for t in build_tasks(app, get_redis(app)) if t.name == "retention"]
    delays = []
    for _ in range(5):
        report = task.run()
        delays.append(task.delay(report))
        if not report.more:
            break
    # One batch per round (the round's budget is 0 s): two rounds due again at once (after
    # the duty cycle's pause), the third finds the backlog gone: next in RETENTION_INTERVAL.
    assert len(delays) == 3
    assert all(0 < delay < 1 for delay in delays[:2]) and delays[2] == task.interval


@pytest.mark.parametrize("duty", [0, -0.5, 1.5, float("nan")])
def test_retention_duty_must_be_a_fraction(sandbox, duty):
    with pytest.raises(ConfigError, match="RETENTION_DUTY"):
        make_app(sandbox, RETENTION_DUTY=duty)


def test_the_retention_migration_goes_down_and_up_again(sandbox, tmp_path):
    """From nothing to head, down past the retention migration, up, down to nothing, up:
    on a scratch database of the same kind (PostgreSQL: the index is built CONCURRENTLY)."""
    url = make_url(TestingConfig.SQLALCHEMY_DATABASE_URI)
    postgresql = url.get_backend_name() == "postgresql"
    if postgresql:
        scratch = url.set(database=f"{url.database}_migrations")
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{scratch.database}"'))
    else:
        scratch = make_url(f"sqlite:///{tmp_path / 'migrations.db'}")
    scratch_app = make_app(
        sandbox, SQLALCHEMY_DATABASE_URI=scratch.render_as_string(hide_password=False)
    )
    try:
        with scratch_app.app_context():

            def index() -> bool:
                names = {i["name"] for i in inspect(db.engine).get_indexes("webhook_events")}
                return "ix_webhook_events_purge_due" in names

            upgrade()
            assert index()
            downgrade(revision="e7c1f2a90b13")
            assert not index() and "erasures" not in inspect(db.engine).get_table_names()
            upgrade()
            assert index()
            if postgresql:
                with db.engine.connect() as conn:
                    valid = conn.scalar(
                        text(
                            "SELECT indisvalid FROM pg_index "
                            "WHERE indexrelid = 'ix_webhook_events_purge_due'::regclass"
                        )
                    )
                assert valid
            downgrade(revision="base")
            assert "webhook_events" not in inspect(db.engine).get_table_names()
            upgrade()
            assert index()
            db.engine.dispose()
    finally:
        if postgresql:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
            admin.dispose()
