"""Processing attempts against the sandbox: success, retries, dead letters, idempotency."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from rq.job import Job
from sqlalchemy import event as sa_event

from webhooks_app import accounts
from webhooks_app.claims import Claim, claim_event
from webhooks_app.extensions import db
from webhooks_app.handlers.payment import upsert_payment
from webhooks_app.models import AttemptOutcome, EventStatus, Payment, WebhookEvent
from webhooks_app.pausing import paused_stages
from webhooks_app.processing import process_event
from webhooks_app.queueing import enqueue_event, get_queue, get_redis
from webhooks_app.replays import ReplayRefused, replay_event
from webhooks_app.timeutil import utcnow

from conftest import drain, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)

AT_11 = "2026-11-29T11:00:00.000-04:00"
AT_12 = "2026-11-29T12:00:00.000-04:00"


def receive(client, sandbox, **payment_fields) -> tuple[dict, int]:
    payment = sandbox.state.add_payment(**payment_fields)
    response = post_webhook(client, payment["id"])
    assert response.status_code == 200, response.json
    return payment, response.json["event_id"]


def event(event_id: int) -> WebhookEvent:
    db.session.expire_all()
    return db.session.get(WebhookEvent, event_id)


def tag_calls(sandbox) -> list[dict]:
    return sandbox.state.calls(api="gohighlevel", method="POST", path_contains="/tags")


def test_process_successfully(app, client, sandbox):
    payment, event_id = receive(client, sandbox, status="approved", transaction_amount=150.5)
    run_worker(app)

    stored = event(event_id)
    assert stored.status == EventStatus.SUCCESS
    assert stored.attempts == 1 and stored.processed_at is not None and stored.last_error is None
    row = db.session.query(Payment).one()
    assert (row.mp_payment_id, row.status, str(row.amount)) == (
        str(payment["id"]),
        "approved",
        "150.50",
    )
    assert row.payer_email == payment["payer"]["email"]
    assert stored.payment_id == row.id
    (contact,) = sandbox.state.contacts()
    assert contact["email"] == payment["payer"]["email"]
    assert row.ghl_contact_id == contact["id"]
    assert contact["tags"] == ["mp-payment-approved"] and row.tags_applied == [
        "mp-payment-approved"
    ]
    (attempt,) = stored.attempt_log
    assert attempt.outcome == AttemptOutcome.SUCCESS and attempt.finished_at is not None
    # The MercadoPago call carried the access token.
    (mp_call,) = sandbox.state.calls(api="mercadopago")
    assert mp_call["path"] == f"/v1/payments/{payment['id']}"


def test_one_event_is_one_checkout_and_three_transactions(app, client, sandbox):
    """Claim + attempt row; payment + link; then attempt, event and the payment's GHL
    fields together: three transactions on one pooled connection, given back after the job.
    On PostgreSQL each of them is one statement in autocommit: no BEGIN, no COMMIT sent."""
    payment, event_id = receive(client, sandbox, status="approved")
    # Workers read the paused stages once per PAUSE_CACHE_SECONDS, not per attempt.
    app.config["PAUSE_CACHE_SECONDS"] = 60
    paused_stages()
    # And their accounts' settings once per ACCOUNT_CACHE_SECONDS.
    app.config["ACCOUNT_CACHE_SECONDS"] = 60
    accounts.by_id(accounts.DEFAULT_ACCOUNT_ID)
    db.session.remove()
    checkouts, statements, commits = [], [], []
    postgresql = db.engine.dialect.name == "postgresql"

    def checkout(*_args) -> None:
        checkouts.append(1)

    def statement(conn, _cursor, sql, *_rest) -> None:
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        statements.append((sql.split(None, 3)[:3] if postgresql else sql.split()[0], autocommit))

    def commit(conn) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            commits.append(1)  # a COMMIT the database receives

    listeners = {"checkout": checkout, "before_cursor_execute": statement, "commit": commit}
    for name, listener in listeners.items():
        sa_event.listen(db.engine, name, listener)
    try:
        assert process_event(event_id) == EventStatus.SUCCESS
    finally:
        for name, listener in listeners.items():
            sa_event.remove(db.engine, name, listener)
    assert len(checkouts) == 1
    if postgresql:
        assert statements == [
            (["SELECT", "webhook_events.id,", "webhook_events.account_id,"], True),
            (["WITH", "claimed", "AS"], True),
            (["WITH", "upserted", "AS"], True),
            # The contact's payments, read under its lock (GHL_TAG_MODE=replace).
            (["SELECT", "payments.id,", "payments.status,"], True),
            (["WITH", "finished_attempt", "AS"], True),
        ]
        assert commits == []
    else:
        kinds = ["SELECT", "UPDATE", "INSERT", "INSERT", "UPDATE", "SELECT"]
        kinds += ["UPDATE", "UPDATE", "UPDATE"]
        assert [kind for kind, _ in statements] == kinds
        # The read's own (empty) transaction, then the three, and the contact's payments.
        assert len(commits) == 5
    assert db.engine.pool.checkedout() == 0
    stored = event(event_id)
    (attempt,) = stored.attempt_log
    assert (stored.status, attempt.outcome) == (EventStatus.SUCCESS, AttemptOutcome.SUCCESS)
    assert stored.payment.ghl_contact_id == sandbox.state.contacts()[0]["id"]
    assert stored.payment.tags_applied == ["mp-payment-approved"]
    assert stored.payment_id == stored.payment.id and stored.updated_at >= attempt.started_at


@pytest.mark.parametrize(
    ("status", "tag"), [("rejected", "mp-payment-rejected"), ("refunded", "mp-payment-refunded")]
)
def test_tag_follows_payment_status(app, client, sandbox, status, tag):
    receive(client, sandbox, status=status)
    run_worker(app)
    (contact,) = sandbox.state.contacts()
    assert contact["tags"] == [tag]


def test_tags_applied_accumulate_and_an_unchanged_contact_writes_nothing(app, client, sandbox):
    """GHL_TAG_MODE=accumulate (the behaviour before replace): each status adds its tag to
    `tags_applied` and none is removed; a notification that changes neither the contact
    nor the tags leaves the payment's GHL fields alone (no UPDATE of them)."""
    app.config["GHL_TAG_MODE"] = "accumulate"
    payment, _ = receive(client, sandbox, status="approved")
    run_worker(app)
    sandbox.state.add_payment(id=payment["id"], status="refunded")
    post_webhook(client, payment["id"])
    run_worker(app)
    row = db.session.query(Payment).one()
    assert row.tags_applied == ["mp-payment-approved", "mp-payment-refunded"]
    (contact,) = sandbox.state.contacts()
    assert row.ghl_contact_id == contact["id"]
    assert contact["tags"] == ["mp-payment-approved", "mp-payment-refunded"]

    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    post_webhook(client, payment["id"])
    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        run_worker(app)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "UPDATE payments" in s], statements
    db.session.expire_all()
    assert db.session.query(Payment).one().tags_applied == row.tags_applied
    assert db.session.query(WebhookEvent).filter_by(status=EventStatus.SUCCESS).count() == 3


def test_fails_twice_then_succeeds_on_third_attempt_with_configured_delays(app, client, sandbox):
    payment, event_id = receive(client, sandbox)
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=2)
    drain(app)

    stored = event(event_id)
    assert stored.status == EventStatus.SUCCESS and stored.attempts == 3
    outcomes = [a.outcome for a in stored.attempt_log]
    assert outcomes == [AttemptOutcome.RETRY, AttemptOutcome.RETRY, AttemptOutcome.SUCCESS]
    assert "500" in stored.attempt_log[0].error and stored.attempt_log[0].traceback
    gaps = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in itertools.pairwise(stored.attempt_log)
    ]
    delays = app.config["RETRY_DELAYS"][:2]
    for gap, delay in zip(gaps, delays, strict=True):
        assert delay - 0.05 <= gap < delay + 2.5, (gaps, delays)


def test_exhausting_retries_dead_letters(app, client, sandbox):
    payment, event_id = receive(client, sandbox)
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=503, times=-1)
    drain(app)

    stored = event(event_id)
    assert stored.status == EventStatus.FAILED
    assert stored.attempts == 1 + len(app.config["RETRY_DELAYS"])
    assert [a.outcome for a in stored.attempt_log][-1] == AttemptOutcome.FAILED
    assert "503" in stored.last_error and stored.next_retry_at is None


def test_payment_that_never_exists_fails_after_all_retries(app, client, sandbox):
    response = post_webhook(client, 404404)
    drain(app)
    stored = event(response.json["event_id"])
    assert stored.status == EventStatus.FAILED
    assert stored.attempts == 1 + len(app.config["RETRY_DELAYS"])
    assert "404" in stored.last_error


def test_error_no_retry_can_fix_dead_letters_at_once(sandbox, client, app):
    bad = make_app(sandbox, MP_ACCESS_TOKEN="wrong-token")
    sandbox.state.access_token = "test-mp-token"  # the sandbox now checks the token
    payment = sandbox.state.add_payment()
    response = post_webhook(client, payment["id"])
    with bad.app_context():
        run_worker(bad)
    stored = event(response.json["event_id"])
    assert stored.status == EventStatus.FAILED and stored.attempts == 1
    assert stored.attempt_log[0].retryable is False
    assert "wrong-token" not in stored.last_error


def test_short_429_is_waited_out_within_the_attempt(app, client, sandbox):
    payment, event_id = receive(client, sandbox)
    email = payment["payer"]["email"]
    sandbox.state.set_fault("gohighlevel", email, status=429, times=1, retry_after=1)
    run_worker(app)
    stored = event(event_id)
    assert stored.status == EventStatus.SUCCESS and stored.attempts == 1
    upserts = sandbox.state.calls(api="gohighlevel", path_contains="/contacts/upsert")
    assert upserts[0]["status"] == 429 and upserts[1]["status"] in (200, 201)
    assert upserts[1]["time"] - upserts[0]["time"] >= 0.95


def test_long_429_retries_later_honouring_retry_after(sandbox, client, app):
    impatient = make_app(sandbox, GHL_MAX_WAIT=1.0)
    payment, event_id = receive(client, sandbox)
    sandbox.state.set_fault(
        "gohighlevel", payment["payer"]["email"], status=429, times=1, retry_after=4
    )
    with impatient.app_context():
        run_worker(impatient)
    stored = event(event_id)
    assert stored.status == EventStatus.PENDING and stored.attempts == 1
    wait = (stored.next_retry_at - stored.attempt_log[0].finished_at).total_seconds()
    assert 3.9 <= wait <= 4.1  # Retry-After (4 s) beats the first configured delay (1 s)


def test_other_types_are_stored_and_ignored(app, client, sandbox):
    response = client.post("/webhooks/mp?topic=point_integration_wh&id=31")
    run_worker(app)
    stored = event(response.json["event_id"])
    assert stored.status == EventStatus.IGNORED and stored.attempts == 1
    assert sandbox.state.calls() == []


def test_same_notification_ten_times_is_processed_once(app, client, sandbox):
    payment = sandbox.state.add_payment()
    for _ in range(10):
        post_webhook(client, payment["id"], notification_id=5, request_id="same")
    run_worker(app)
    assert db.session.query(WebhookEvent).count() == 1
    assert len(sandbox.state.calls(api="mercadopago")) == 1
    assert len(tag_calls(sandbox)) == 1


def test_claim_is_won_once_and_extra_jobs_do_nothing(app, client, sandbox):
    _, event_id = receive(client, sandbox)
    won = claim_event(event_id)
    assert won is not None and won.number == 1  # the attempt row comes with the claim
    assert claim_event(event_id) is None
    assert process_event(event_id) == EventStatus.PROCESSING  # someone else holds it
    assert sandbox.state.calls() == []


def test_concurrent_claims_have_one_winner_and_one_attempt_row(app, client, sandbox):
    """Eight workers claim the same event at once, each on its own connection: the
    conditional UPDATE (on PostgreSQL inside the one-statement claim) lets one win, and
    only the winner's attempt row exists."""
    _, event_id = receive(client, sandbox)
    db.session.remove()
    start = threading.Barrier(8)

    def claim(_: int) -> Claim | None:
        with app.app_context():
            start.wait(timeout=10)
            try:
                return claim_event(event_id)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(claim, range(8)))
    (won,) = [c for c in claims if c is not None]
    stored = event(event_id)
    assert (stored.status, stored.attempts) == (EventStatus.PROCESSING, 1)
    assert [(a.id, a.number) for a in stored.attempt_log] == [(won.attempt_id, 1)]


def test_job_for_a_finished_event_does_nothing(app, client, sandbox):
    _, event_id = receive(client, sandbox)
    run_worker(app)
    enqueue_event(event_id, 99)
    run_worker(app)
    assert event(event_id).attempts == 1
    assert len(sandbox.state.calls(api="mercadopago")) == 1


def test_job_arriving_early_waits_for_the_due_time(app, client, sandbox):
    _, event_id = receive(client, sandbox)
    get_queue(app).empty()
    stored = event(event_id)
    stored.next_retry_at = utcnow() + timedelta(seconds=1)
    db.session.commit()
    due = stored.next_retry_at
    assert process_event(event_id) == EventStatus.SUCCESS
    assert event(event_id).attempt_log[0].started_at >= due


def test_job_far_ahead_of_due_time_does_nothing(app, client, sandbox):
    _, event_id = receive(client, sandbox)
    stored = event(event_id)
    stored.next_retry_at = utcnow() + timedelta(minutes=10)
    db.session.commit()
    run_worker(app)
    assert event(event_id).status == EventStatus.PENDING and event(event_id).attempts == 0
    assert sandbox.state.calls() == []  # the reconciler queues it again once it is due


def test_older_payment_data_never_overwrites_newer(app):
    newer = {"id": 1, "status": "refunded", "date_last_updated": "2026-11-29T12:00:00.000-04:00"}
    older = {"id": 1, "status": "approved", "date_last_updated": "2026-11-29T11:00:00.000-04:00"}
    upsert_payment(newer)
    assert upsert_payment(older).status == "refunded"
    newest = {
        "id": 1,
        "status": "charged_back",
        "date_last_updated": "2026-11-29T13:00:00.000-04:00",
    }
    assert upsert_payment(newest).status == "charged_back"
    assert db.session.query(Payment).count() == 1


def test_payment_upsert_is_one_statement_and_keeps_the_newest(app):
    """One INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING per upsert, on both databases:
    equal or newer data wins, older data and its RETURNING of nothing leave the row alone."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        first = upsert_payment({"id": 7, "status": "approved", "date_last_updated": AT_11})
        assert len(statements) == 1 and "ON CONFLICT" in statements[0]
        db.session.commit()
        statements.clear()
        newer = upsert_payment({"id": 7, "status": "refunded", "date_last_updated": AT_12})
        assert len(statements) == 1 and (newer.id, newer.status) == (first.id, "refunded")
        statements.clear()
        older = upsert_payment({"id": 7, "status": "pending", "date_last_updated": AT_11})
        # Nothing returned (the WHERE kept the newer row): the stored row is read instead.
        assert len(statements) == 2 and (older.id, older.status) == (first.id, "refunded")
        same = upsert_payment({"id": 7, "status": "charged_back", "date_last_updated": AT_12})
        assert same.status == "charged_back"  # the same date: MercadoPago's latest read wins
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    db.session.commit()
    db.session.expire_all()
    row = db.session.query(Payment).one()
    assert (row.status, row.mp_date_last_updated) == ("charged_back", datetime(2026, 11, 29, 16))
    assert row.created_at <= row.updated_at


def test_an_attempt_whose_read_is_older_links_the_stored_payment(app, client, sandbox):
    """MercadoPago answers with data older than the stored row (a newer read came first):
    the row stays as it is, and the event is linked to it and tagged by its status. On
    PostgreSQL the one-statement upsert returns nothing, and the general path takes over."""
    payment, event_id = receive(client, sandbox, status="approved")
    newer = {"status": "refunded", "date_last_updated": "2099-01-01T00:00:00.000-04:00"}
    stored = upsert_payment({**payment, **newer})
    db.session.commit()
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert process_event(event_id) == EventStatus.SUCCESS
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    assert len([s for s in statements if "ON CONFLICT" in s]) == 1  # the upsert is not repeated
    db.session.expire_all()
    row = db.session.query(Payment).one()
    assert (row.id, row.status) == (stored.id, "refunded")
    assert event(event_id).payment_id == row.id
    (contact,) = sandbox.state.contacts()
    assert contact["tags"] == ["mp-payment-refunded"] and row.tags_applied == contact["tags"]


def test_payment_upsert_without_dates_takes_the_latest_read(app):
    upsert_payment({"id": 8, "status": "pending"})
    assert upsert_payment({"id": 8, "status": "approved"}).status == "approved"
    # A stored row without a date is overwritten by a dated read, and the other way round.
    assert upsert_payment({"id": 8, "status": "refunded", "date_last_updated": AT_11}).status == (
        "refunded"
    )
    assert upsert_payment({"id": 8, "status": "cancelled"}).status == "cancelled"
    db.session.commit()
    assert db.session.query(Payment).count() == 1


def test_replay_gives_a_dead_letter_a_fresh_budget(app, client, sandbox):
    payment, event_id = receive(client, sandbox)
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=-1)
    drain(app)
    assert event(event_id).status == EventStatus.FAILED
    sandbox.state.set_fault("mercadopago", str(payment["id"]), times=0)  # MercadoPago recovers
    replay_event(event(event_id))
    drain(app)
    stored = event(event_id)
    assert stored.status == EventStatus.SUCCESS
    assert stored.attempts == 2 + len(app.config["RETRY_DELAYS"])
    with pytest.raises(ReplayRefused):
        replay_event(stored)
    assert replay_event(stored, force=True) is True
    assert Job.exists(
        f"event-{event_id}-attempt-{stored.attempts + 1}", connection=get_queue(app).connection
    )


def test_events_about_one_payment_never_run_together(app, client, sandbox):
    payment = sandbox.state.add_payment()
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    lock = get_redis(app).lock(f"lock:1:payment:{payment['id']}", timeout=30)
    assert lock.acquire()  # another worker is processing this payment
    run_worker(app)
    stored = event(event_id)
    assert stored.status == EventStatus.PENDING and stored.attempts == 0  # postponed, not spent
    assert sandbox.state.calls() == []
    lock.release()
    drain(app)
    assert event(event_id).status == EventStatus.SUCCESS and event(event_id).attempts == 1


def test_out_of_order_deliveries_end_in_the_latest_state(app, client, sandbox):
    payment = sandbox.state.add_payment(status="pending")
    first = post_webhook(client, payment["id"]).json["event_id"]
    sandbox.state.add_payment(id=payment["id"], status="approved")
    second = post_webhook(client, payment["id"]).json["event_id"]
    get_queue(app).empty()
    # The newer notification is processed first; the older one after it.
    assert process_event(second) == EventStatus.SUCCESS
    assert process_event(first) == EventStatus.SUCCESS
    row = db.session.query(Payment).one()
    assert row.status == "approved"
    (contact,) = sandbox.state.contacts()
    assert contact["tags"] == ["mp-payment-approved"]
