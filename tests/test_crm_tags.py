"""Tags that tell the truth (GHL_TAG_MODE=replace), custom fields, monotonic CRM state, and
MercadoPago's test notifications. Real Redis, the real database, real HTTP to the sandbox;
the crash test kills a real worker process."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from webhooks_app.config import parse_custom_fields
from webhooks_app.crm import SET_CONTACT, ContactChange, gohighlevel
from webhooks_app.extensions import db
from webhooks_app.handlers import TEST_NOTIFICATION
from webhooks_app.models import AttemptOutcome, EventStatus, Payment, WebhookEvent
from webhooks_app.processing import process_event
from webhooks_app.queueing import get_redis
from webhooks_app.sandbox.payments import parse_mp_time

from conftest import api_headers, make_app, post_webhook, run_worker
from processes import Processes, wait_until

APPROVED, REFUNDED = "mp-payment-approved", "mp-payment-refunded"
PENDING, CHARGED_BACK = "mp-payment-pending", "mp-payment-charged-back"
PARTIAL = "mp-payment-partially-refunded"


def notify(app, client, payment_id, **kwargs) -> int:
    response = post_webhook(client, payment_id, **kwargs)
    assert response.status_code == 200, response.json
    run_worker(app)
    return response.json["event_id"]


def contact_tags(sandbox, email: str) -> list[str]:
    return sandbox.state.find_contact(email)["tags"]


def stored(payment_id) -> Payment:
    db.session.expire_all()
    return db.session.query(Payment).filter_by(mp_payment_id=str(payment_id)).one()


def event(event_id: int) -> WebhookEvent:
    db.session.expire_all()
    return db.session.get(WebhookEvent, event_id)


def new_payment(sandbox, email: str | None = None, **fields) -> dict:
    email = email or f"payer-{uuid.uuid4().hex[:8]}@example.com"
    return sandbox.state.add_payment(payer={"email": email}, **fields)


@pytest.mark.parametrize(
    ("change", "tag"),
    [({"status": "refunded"}, REFUNDED), ({"status": "charged_back"}, CHARGED_BACK)],
)
def test_a_status_change_swaps_the_tag(app, client, sandbox, change, tag):
    payment = new_payment(sandbox)
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [APPROVED]

    updated = sandbox.state.add_payment(id=payment["id"], **change)
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [tag]
    assert stored(payment["id"]).tags_applied == [tag]
    assert stored(payment["id"]).crm_synced_at == parse_mp_time(
        updated["date_last_updated"]
    ).replace(tzinfo=None)
    (removal,) = sandbox.state.calls(api="gohighlevel", method="DELETE")
    assert removal["json"] == {"tags": [APPROVED]}


def test_a_refunded_payment_of_the_sandbox_has_mercadopagos_fields(sandbox):
    payment = new_payment(sandbox, transaction_amount=100)
    partly = sandbox.state.add_payment(id=payment["id"], refund=30)
    assert (partly["status"], partly["status_detail"]) == ("approved", "partially_refunded")
    assert partly["transaction_amount_refunded"] == 30
    assert [refund["amount"] for refund in partly["refunds"]] == [30]
    whole = sandbox.state.add_payment(id=payment["id"], refund=None)
    assert (whole["status"], whole["transaction_amount_refunded"]) == ("refunded", 100)
    assert [refund["amount"] for refund in whole["refunds"]] == [30, 70]
    assert sandbox.state.add_payment(status="refunded")["refunds"][0]["amount"] == 100
    assert sandbox.state.add_payment(status="in_mediation")["status_detail"] == "in_process"


def test_a_partial_refund_is_tagged_partially_refunded(app, client, sandbox):
    payment = new_payment(sandbox, transaction_amount=100)
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])
    sandbox.state.add_payment(id=payment["id"], refund=25)
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [PARTIAL]
    assert stored(payment["id"]).status == "approved"

    sandbox.state.add_payment(id=payment["id"], refund=None)  # the rest
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [REFUNDED]


def test_a_tag_another_payment_of_the_contact_needs_stays(app, client, sandbox):
    first = new_payment(sandbox)
    email = first["payer"]["email"]
    second = new_payment(sandbox, email)
    notify(app, client, first["id"])
    notify(app, client, second["id"])
    assert contact_tags(sandbox, email) == [APPROVED]

    sandbox.state.add_payment(id=first["id"], status="refunded")
    notify(app, client, first["id"])
    assert sorted(contact_tags(sandbox, email)) == [APPROVED, REFUNDED]
    assert not sandbox.state.calls(api="gohighlevel", method="DELETE")

    sandbox.state.add_payment(id=second["id"], status="refunded")
    notify(app, client, second["id"])
    assert contact_tags(sandbox, email) == [REFUNDED]


def test_two_workers_syncing_one_contact_take_turns(app, client, sandbox):
    """P1 approved → refunded while P2 pending → approved, by two workers at once. P1's
    worker read P2 as pending, so it removes approved; were P2's add of approved to land
    before that removal (no per-contact lock), the contact would lose a tag P2 needs."""
    first = new_payment(sandbox)
    email = first["payer"]["email"]
    second = new_payment(sandbox, email, status="pending")
    notify(app, client, first["id"])
    notify(app, client, second["id"])
    assert sorted(contact_tags(sandbox, email)) == [APPROVED, PENDING]
    sandbox.state.add_payment(id=first["id"], status="refunded")
    first_event = post_webhook(client, first["id"]).json["event_id"]
    # P1's removal of approved hangs a while: P2's sync runs meanwhile.
    sandbox.state.set_fault("gohighlevel", f"{email}#remove_tags", status=0, delay=1.5)
    sandbox.state.clear_calls()
    db.session.remove()

    def process(event_id: int) -> str:
        with app.app_context():
            return process_event(event_id)

    with ThreadPoolExecutor(max_workers=1) as pool:
        refunding = pool.submit(process, first_event)

        def removing() -> bool:
            return bool(
                sandbox.state.calls(api="gohighlevel", method="POST", path_contains="/tags")
            )

        wait_until(removing, 10)  # P1 added refunded and is in its (slow) removal
        sandbox.state.add_payment(id=second["id"], status="approved")
        second_event = post_webhook(client, second["id"]).json["event_id"]
        assert process(second_event) == EventStatus.SUCCESS
        assert refunding.result(timeout=20) == EventStatus.SUCCESS
    assert sorted(contact_tags(sandbox, email)) == [APPROVED, REFUNDED]


def test_a_contact_busy_for_longer_than_the_retry_budget_never_dead_letters(
    app, client, sandbox, monkeypatch
):
    """Another worker holds the contact's lock through more attempts than RETRY_DELAYS
    allows: each one is recorded `busy`, none spends the budget, and once the lock is free
    the event succeeds (a burst of one customer's payments must never dead-letter)."""
    monkeypatch.setattr(gohighlevel, "CONTACT_LOCK_WAIT", 0.1)
    payment = new_payment(sandbox)
    email = payment["payer"]["email"]
    held = get_redis(app).lock(f"lock:contact:test-location:{email}", timeout=60)
    assert held.acquire(blocking=False)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    budget = len(app.config["RETRY_DELAYS"]) + 1
    for _ in range(budget + 2):
        assert process_event(event_id) == EventStatus.PENDING
        db.session.execute(  # due now: no need to wait out the busy delay
            update(WebhookEvent).where(WebhookEvent.id == event_id).values(next_retry_at=None)
        )
        db.session.commit()
    busy = event(event_id)
    assert busy.status == EventStatus.PENDING
    assert busy.attempts == budget + 2 and busy.attempts_this_round == 0
    assert {attempt.outcome for attempt in busy.attempt_log} == {AttemptOutcome.BUSY}
    assert all(attempt.traceback is None for attempt in busy.attempt_log)
    assert "ContactBusy" in busy.last_error
    held.release()
    assert process_event(event_id) == EventStatus.SUCCESS
    assert contact_tags(sandbox, email) == [APPROVED]
    # A real failure after the busy attempts still has the whole budget.
    assert event(event_id).attempts_this_round == 1


def test_pending_then_approved(app, client, sandbox):
    payment = new_payment(sandbox, status="pending")
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [PENDING]
    sandbox.state.add_payment(id=payment["id"], status="approved")
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [APPROVED]


def test_accumulate_mode_never_removes_a_tag(app, client, sandbox):
    app.config["GHL_TAG_MODE"] = "accumulate"
    payment = new_payment(sandbox)
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])
    sandbox.state.add_payment(id=payment["id"], status="refunded")
    notify(app, client, payment["id"])
    assert contact_tags(sandbox, email) == [APPROVED, REFUNDED]
    assert stored(payment["id"]).tags_applied == [APPROVED, REFUNDED]
    assert not sandbox.state.calls(api="gohighlevel", method="DELETE")


CUSTOM_FIELDS = (
    "payment_id=contact.mp_last_payment,status=contact.mp_status,amount=contact.mp_amount,"
    "currency=contact.mp_currency,date=contact.mp_date,external_reference=Ab12Cd34Ef56Gh78Ij90"
)


def fields_of(sandbox, email: str) -> dict[str, str]:
    contact = sandbox.state.find_contact(email)
    return {field["id"]: field["value"] for field in contact["customFields"]}


def test_custom_fields_are_written_in_the_upsert(app, client, sandbox):
    app.config["GHL_CUSTOM_FIELDS"] = parse_custom_fields(CUSTOM_FIELDS)
    payment = new_payment(sandbox, transaction_amount=150.5, external_reference="order-77")
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])
    assert fields_of(sandbox, email) == {
        "contact.mp_last_payment": str(payment["id"]),
        "contact.mp_status": "approved",
        "contact.mp_amount": "150.50",
        "contact.mp_currency": "BRL",
        "contact.mp_date": payment["date_last_updated"],
        "Ab12Cd34Ef56Gh78Ij90": "order-77",
    }
    (upsert,) = sandbox.state.calls(api="gohighlevel", path_contains="/upsert")
    assert {"key": "contact.mp_status", "field_value": "approved"} in upsert["json"]["customFields"]
    assert {"id": "Ab12Cd34Ef56Gh78Ij90", "field_value": "order-77"} in upsert["json"][
        "customFields"
    ]


def test_an_older_notification_after_a_newer_one_changes_nothing_in_ghl(app, client, sandbox):
    """MercadoPago answers an older state (a lagging read) after the newer one was synced."""
    app.config["GHL_CUSTOM_FIELDS"] = parse_custom_fields("status=contact.mp_status")
    payment = new_payment(sandbox)
    email = payment["payer"]["email"]
    older = payment["date_last_updated"]
    notify(app, client, payment["id"])
    sandbox.state.add_payment(id=payment["id"], status="refunded")
    notify(app, client, payment["id"])
    synced = stored(payment["id"]).crm_synced_at
    assert contact_tags(sandbox, email) == [REFUNDED]

    sandbox.state.add_payment(
        id=payment["id"], status="approved", refunds=[], date_last_updated=older
    )
    sandbox.state.clear_calls()
    event_id = notify(app, client, payment["id"])
    assert event(event_id).status == EventStatus.SUCCESS
    assert contact_tags(sandbox, email) == [REFUNDED]
    assert fields_of(sandbox, email) == {"contact.mp_status": "refunded"}
    tag_bodies = [call["json"] for call in sandbox.state.calls(path_contains="/tags")]
    assert {"tags": [APPROVED]} not in tag_bodies
    row = stored(payment["id"])
    assert (row.status, row.tags_applied, row.crm_synced_at) == ("refunded", [REFUNDED], synced)


def test_an_older_sync_is_never_recorded(app, sandbox):
    """SET_CONTACT's guard: CRM fields synced from older data never overwrite newer ones."""
    payment = new_payment(sandbox)
    row = Payment(mp_payment_id=str(payment["id"]), status="refunded", tags_applied=[REFUNDED])
    db.session.add(row)
    db.session.commit()
    newer = parse_mp_time(payment["date_last_updated"]).replace(tzinfo=None)
    db.session.execute(SET_CONTACT, ContactChange(row.id, "c1", [REFUNDED], newer).params())
    older = ContactChange(row.id, "c1", [APPROVED], newer - timedelta(seconds=5))
    db.session.execute(SET_CONTACT, older.params())
    db.session.commit()
    assert (stored(payment["id"]).tags_applied, stored(payment["id"]).crm_synced_at) == (
        [REFUNDED],
        newer,
    )


# -- MercadoPago's test notifications ----------------------------------------------


def test_a_test_notification_about_an_unknown_payment_is_ignored(app, client, sandbox):
    event_id = notify(app, client, 404405, live_mode=False)
    stored_event = event(event_id)
    assert stored_event.status == EventStatus.IGNORED
    assert stored_event.last_error == TEST_NOTIFICATION
    (attempt,) = stored_event.attempt_log
    assert (attempt.outcome, attempt.error) == (AttemptOutcome.IGNORED, TEST_NOTIFICATION)
    api = client.get(f"/api/webhook-events/{event_id}", headers=api_headers()).json
    assert (api["status"], api["last_error"]) == ("ignored", TEST_NOTIFICATION)


def test_a_live_notification_about_an_unknown_payment_is_retried(app, client, sandbox):
    event_id = notify(app, client, 404406)  # live_mode true
    stored_event = event(event_id)
    assert stored_event.status == EventStatus.PENDING and stored_event.next_retry_at
    assert "404" in stored_event.last_error


def test_the_admin_page_shows_why_a_test_notification_was_ignored(app, sandbox):
    app = make_app(sandbox, ADMIN_USERNAME="operator", ADMIN_PASSWORD="pw")
    client = app.test_client()
    with app.app_context():
        event_id = notify(app, client, 404407, live_mode=False)
        auth = base64.b64encode(b"operator:pw").decode()
        page = client.get(f"/admin/events/{event_id}", headers={"Authorization": f"Basic {auth}"})
        db.session.remove()
    assert page.status_code == 200
    assert "Ignored because" in page.text and TEST_NOTIFICATION in page.text


# -- a worker killed between adding the new tag and removing the old one ----------


@pytest.fixture
def service(app, sandbox, tmp_path):
    processes = Processes(
        tmp_path,
        sandbox.url,
        RECONCILE_INTERVAL="0.5",
        RECONCILE_GRACE="1",
        LEASE_SECONDS="8",
        TEST_HTTP_TIMEOUT="6",
        GHL_MAX_WAIT="2",
    )
    yield processes
    processes.stop_all()


@pytest.mark.faults
@pytest.mark.timeout(120)
def test_worker_killed_between_the_tag_calls_ends_with_exactly_the_right_tags(
    app, client, sandbox, service
):
    payment = new_payment(sandbox)
    email = payment["payer"]["email"]
    notify(app, client, payment["id"])  # approved, in this process
    sandbox.state.add_payment(id=payment["id"], status="refunded")
    # The old tag's removal (the second tag call) hangs, then fails: the worker dies in it.
    sandbox.state.set_fault("gohighlevel", f"{email}#remove_tags", status=500, delay=4, times=1)
    service.start_worker()
    event_id = post_webhook(client, payment["id"]).json["event_id"]

    def added() -> bool:
        calls = sandbox.state.calls(api="gohighlevel", method="POST", path_contains="/tags")
        return any(call["json"] == {"tags": [REFUNDED]} for call in calls)

    wait_until(added, 30)
    time.sleep(0.5)  # inside the (slow) removal
    service.signal("worker", signal.SIGKILL)
    # Never neither tag: the new one is there before the old one goes.
    assert sorted(contact_tags(sandbox, email)) == [APPROVED, REFUNDED]

    service.start_worker("worker-2")
    service.start_scheduler()
    wait_until(lambda: event(event_id).status == EventStatus.SUCCESS, 60)
    assert contact_tags(sandbox, email) == [REFUNDED]
    assert stored(payment["id"]).tags_applied == [REFUNDED]
    outcomes = [attempt.outcome for attempt in event(event_id).attempt_log]
    assert outcomes[0] == AttemptOutcome.LOST and outcomes[-1] == AttemptOutcome.SUCCESS
