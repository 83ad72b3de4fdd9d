"""subscription_authorized_payment: a subscription's recurring charge, through the sandbox.

The charge is stored and linked to its subscription; a subscription we lack becomes a
`subscription_preapproval` event, the charge's payment a `payment` event; redeliveries and
older reads change nothing; MercadoPago's failures and 404s are retried.
"""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, Subscription
from webhooks_app.resources import AuthorizedPayment

from conftest import drain, events, post_topic

pytestmark = pytest.mark.timeout(60)

TOPIC = "subscription_authorized_payment"
SUBSCRIBER = "member@example.com"
MP_AUTH = {"Authorization": "Bearer TEST-token"}


def notify(
    client, resource_id, *, event_type: str = TOPIC, live_mode: bool = True, id: int | None = None
):
    """A signed Webhooks-form notification, as MercadoPago sends it; asserts the 200."""
    answer = post_topic(client, event_type, resource_id, notification_id=id, live_mode=live_mode)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def new_subscription(sandbox, **fields):
    return sandbox.state.add_preapproval(
        payer_email=SUBSCRIBER,
        reason="Gold plan",
        auto_recurring={"transaction_amount": 99.5, "currency_id": "ARS"},
        **fields,
    )


def charge_row(charge_id) -> AuthorizedPayment:
    db.session.expire_all()
    return db.session.scalars(
        select(AuthorizedPayment).where(
            AuthorizedPayment.mp_authorized_payment_id == str(charge_id)
        )
    ).one()


def tags(sandbox, email: str = SUBSCRIBER) -> set[str]:
    contact = sandbox.state.find_contact(email)
    return set(contact["tags"]) if contact else set()


def test_the_sandbox_serves_charges_with_mercadopago_shape_and_errors(sandbox):
    preapproval = new_subscription(sandbox)
    control = f"{sandbox.url}/_sandbox/authorized-payments"
    created = requests.post(control, json={"preapproval_id": preapproval["id"]}, timeout=5).json()
    assert isinstance(created["id"], int) and created["status"] == "processed"
    assert created["preapproval_id"] == preapproval["id"] and created["reason"] == "Gold plan"
    payment = sandbox.state.get_payment(created["payment"]["id"])
    assert payment["payer"]["email"] == SUBSCRIBER
    assert (payment["transaction_amount"], payment["currency_id"]) == (99.5, "ARS")
    assert created["payment"] == {
        "id": payment["id"],
        "status": "approved",
        "status_detail": "accredited",
    }
    url = f"{sandbox.url}/authorized_payments/{created['id']}"
    read = requests.get(url, headers=MP_AUTH, timeout=5).json()
    assert read == created
    assert {"debit_date", "retry_attempt", "summarized", "payer_id", "last_modified"} <= set(read)

    missing = requests.get(f"{sandbox.url}/authorized_payments/1", headers=MP_AUTH, timeout=5)
    assert missing.status_code == 404
    assert set(missing.json()) == {"message", "error", "status", "cause"}
    sandbox.state.set_fault("mercadopago", str(created["id"]), status=429, times=1)
    assert requests.get(url, headers=MP_AUTH, timeout=5).status_code == 429
    assert requests.get(url, headers=MP_AUTH, timeout=5).status_code == 200
    assert requests.get(url, timeout=5).status_code == 401

    update = {"id": created["id"], "status": "recycling", "payment_status": "rejected"}
    updated = requests.post(control, json={**update, "retry_attempt": 1}, timeout=5).json()
    assert (updated["status"], updated["retry_attempt"]) == ("recycling", 1)
    assert updated["payment"]["status"] == "rejected"
    assert sandbox.state.get_payment(payment["id"])["status"] == "rejected"
    assert updated["last_modified"] > created["last_modified"]
    scheduled = {"preapproval_id": preapproval["id"], "status": "scheduled"}
    assert requests.post(control, json=scheduled, timeout=5).json()["payment"] is None
    refused = requests.post(control, json={"preapproval_id": "nope"}, timeout=5)
    assert refused.status_code == 400 and "does not exist" in refused.json()["error"]


def test_a_charge_is_stored_linked_to_its_subscription_and_its_payment_processed(
    app, client, sandbox
):
    preapproval = new_subscription(sandbox)
    notify(client, preapproval["id"], event_type="subscription_preapproval")
    drain(app)
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    notify(client, charge["id"])
    drain(app)

    row = charge_row(charge["id"])
    subscription = db.session.scalars(select(Subscription)).one()
    assert (row.mp_preapproval_id, row.subscription_id) == (preapproval["id"], subscription.id)
    assert (row.status, row.payment_status, row.payment_status_detail) == (
        "processed",
        "approved",
        "accredited",
    )
    assert (str(row.amount), row.currency, row.retry_attempt) == ("99.50", "ARS", 0)
    assert row.reason == "Gold plan" and row.debit_date is not None
    assert row.mp_payment_id == str(charge["payment"]["id"])
    assert "payer_id" not in row.raw and row.raw["status"] == "processed"

    # Its payment came in as a payment event of its own, and was processed as any payment.
    (payment_event,) = events("payment")
    assert payment_event.source == "authorized_pay"
    assert payment_event.resource_id == row.mp_payment_id
    payment = db.session.scalars(select(Payment)).one()
    assert (payment.mp_payment_id, payment.status, payment.payer_email) == (
        row.mp_payment_id,
        "approved",
        SUBSCRIBER,
    )
    assert payment_event.payment_id == payment.id
    assert {e.status for e in events()} == {EventStatus.SUCCESS}
    assert len(events("subscription_preapproval")) == 1  # it was stored: no event for it
    assert tags(sandbox) == {"mp-subscription-authorized", "mp-payment-approved"}


def test_a_charge_before_its_subscription_brings_the_subscription_in(app, client, sandbox):
    preapproval = new_subscription(sandbox)
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    notify(client, charge["id"])
    drain(app)

    (subscription_event,) = events("subscription_preapproval")
    assert subscription_event.source == "authorized_pay"
    assert subscription_event.resource_id == preapproval["id"]
    assert subscription_event.status == EventStatus.SUCCESS
    subscription = db.session.scalars(select(Subscription)).one()
    assert subscription.mp_preapproval_id == preapproval["id"]
    assert charge_row(charge["id"]).subscription_id == subscription.id
    assert tags(sandbox) == {"mp-subscription-authorized", "mp-payment-approved"}


def test_a_redelivered_charge_creates_nothing_twice(app, client, sandbox):
    preapproval = new_subscription(sandbox)
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    first = notify(client, charge["id"], id=424242)
    drain(app)
    # The same notification again (MercadoPago's retry), then another about the same state.
    assert notify(client, charge["id"], id=424242).json["status"] == "duplicate"
    notify(client, charge["id"])
    drain(app)

    assert [e.status for e in events(TOPIC)] == [EventStatus.SUCCESS] * 2
    assert first.json["event_id"] == events(TOPIC)[0].id
    assert len(events("payment")) == 1 and len(events("subscription_preapproval")) == 1
    assert db.session.query(AuthorizedPayment).count() == 1
    assert db.session.query(Payment).count() == 1


def test_an_older_read_never_overwrites_a_newer_one(app, client, sandbox):
    preapproval = new_subscription(sandbox)
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    notify(client, charge["id"])
    drain(app)

    # The charge failed to collect: MercadoPago retries it (recycling), its payment rejected.
    sandbox.state.add_authorized_payment(
        id=charge["id"], status="recycling", payment_status="rejected", retry_attempt=1
    )
    notify(client, charge["id"])
    drain(app)
    row = charge_row(charge["id"])
    assert (row.status, row.payment_status, row.retry_attempt) == ("recycling", "rejected", 1)
    assert len(events("payment")) == 2  # the stored payment was behind: read again
    assert db.session.scalars(select(Payment.status)).one() == "rejected"
    newer = row.mp_last_modified

    # A lagging read of the older state changes nothing, and queues nothing.
    sandbox.state.add_authorized_payment(
        id=charge["id"], status="processed", retry_attempt=0, last_modified=charge["last_modified"]
    )
    notify(client, charge["id"])
    drain(app)
    row = charge_row(charge["id"])
    assert (row.status, row.retry_attempt, row.mp_last_modified) == ("recycling", 1, newer)
    assert len(events("payment")) == 2
    assert {e.status for e in events()} == {EventStatus.SUCCESS}


def test_a_failing_mercadopago_is_retried_to_success(app, client, sandbox):
    charge = sandbox.state.add_authorized_payment(preapproval_id=new_subscription(sandbox)["id"])
    sandbox.state.set_fault("mercadopago", str(charge["id"]), status=500, times=2)
    notify(client, charge["id"])
    drain(app)
    (event,) = events(TOPIC)
    assert (event.status, event.attempts) == (EventStatus.SUCCESS, 3)
    calls = sandbox.state.calls(api="mercadopago", path_contains="/authorized_payments/")
    assert [call["status"] for call in calls] == [500, 500, 200]
    assert charge_row(charge["id"]).status == "processed"


def test_a_live_charge_not_found_yet_is_retried_a_test_one_ignored(app, client, sandbox):
    preapproval = new_subscription(sandbox)
    notify(client, "7000000001")
    notify(client, "7000000002", live_mode=False)
    drain(app, until=lambda: events(TOPIC)[0].attempts >= 2)
    live, test = events(TOPIC)
    assert live.status == EventStatus.PENDING and "404" in (live.last_error or "")
    assert test.status == EventStatus.IGNORED and test.attempts == 1
    assert test.last_error == "MercadoPago test notification"

    sandbox.state.add_authorized_payment(id=7000000001, preapproval_id=preapproval["id"])
    drain(app)
    assert events(TOPIC)[0].status == EventStatus.SUCCESS
    assert charge_row(7000000001).status == "processed"


def test_simulate_creates_a_subscription_and_its_charge_and_notifies(app, sandbox, runner):
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
        args = ["webhooks", "simulate", "--url", url, "--count", "1", "--type", TOPIC]
        result = runner.invoke(args=args)
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    drain(app)
    assert [e.status for e in events(TOPIC)] == [EventStatus.SUCCESS]
    row = db.session.scalars(select(AuthorizedPayment)).one()
    assert row.subscription_id is not None and row.payment_status == "approved"
    assert {e.type for e in events()} == {TOPIC, "subscription_preapproval", "payment"}
    assert {e.status for e in events()} == {EventStatus.SUCCESS}


def a_subscription_with_a_charge(app, client, sandbox) -> tuple[dict, dict]:
    """A processed subscription and charge (with its payment), as the pipeline stores them."""
    preapproval = new_subscription(sandbox, preapproval_plan_id="plan-gold")
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    notify(client, charge["id"])
    drain(app)
    return preapproval, charge


def test_admin_pages_show_subscriptions_and_their_charges(app, sandbox):
    from test_admin import AUTH, PASSWORD, USERNAME

    from conftest import make_app

    admin = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    with admin.app_context():
        web = admin.test_client()
        preapproval, charge = a_subscription_with_a_charge(admin, web, sandbox)
        payment_id = charge["payment"]["id"]

        listing = web.get("/admin/subscriptions", headers=AUTH)
        assert listing.status_code == 200
        assert f'href="/admin/subscriptions/{preapproval["id"]}"' in listing.text
        assert SUBSCRIBER in listing.text and "mp-subscription-authorized" in listing.text
        assert 'href="/admin/subscriptions" class="active"' in listing.text  # the nav link
        paused = web.get("/admin/subscriptions?status=paused", headers=AUTH)
        assert "No subscriptions match." in paused.text
        assert web.get("/admin/subscriptions?status=Bad!", headers=AUTH).status_code == 400

        page = web.get(f"/admin/subscriptions/{preapproval['id']}", headers=AUTH)
        assert page.status_code == 200
        for text in ("Gold plan", "plan-gold", "99.50 ARS", "every 1 months", SUBSCRIBER):
            assert text in page.text
        assert str(charge["id"]) in page.text and "processed" in page.text
        assert f'href="/admin/payments/{payment_id}"' in page.text
        assert web.get("/admin/subscriptions/nope", headers=AUTH).status_code == 404

        payment_page = web.get(f"/admin/payments/{payment_id}", headers=AUTH)
        assert f'href="/admin/subscriptions/{preapproval["id"]}"' in payment_page.text


def test_api_shows_a_subscription_with_its_charges(app, client, sandbox):
    from conftest import api_headers

    preapproval, charge = a_subscription_with_a_charge(app, client, sandbox)
    listed = client.get("/api/subscriptions?status=authorized", headers=api_headers()).json
    assert [s["mp_preapproval_id"] for s in listed["subscriptions"]] == [preapproval["id"]]
    one = client.get(f"/api/subscriptions/{preapproval['id']}", headers=api_headers())
    assert one.status_code == 200 and one.json["payer_email"] == SUBSCRIBER
    (shown,) = one.json["authorized_payments"]
    assert shown["mp_authorized_payment_id"] == str(charge["id"])
    assert (shown["status"], shown["payment_status"], shown["amount"]) == (
        "processed",
        "approved",
        "99.50",
    )
    assert shown["mp_payment_id"] == str(charge["payment"]["id"])
    assert client.get("/api/subscriptions/nope", headers=api_headers()).status_code == 404
    bad = client.get("/api/subscriptions?status=Bad!", headers=api_headers())
    assert bad.status_code == 400 and "status" in bad.json["error"]


def test_cli_shows_a_subscription_with_its_charges(app, client, sandbox, runner):
    import json

    preapproval, charge = a_subscription_with_a_charge(app, client, sandbox)
    result = runner.invoke(args=["webhooks", "subscription", preapproval["id"]])
    assert result.exit_code == 0, result.output
    assert f"subscription {preapproval['id']}: authorized, 99.50 ARS every 1 months" in (
        result.output
    )
    payment = f"payment {charge['payment']['id']}: approved"
    assert f"charge {charge['id']}: processed" in result.output and payment in result.output
    assert "1 charge(s)" in result.output
    as_json = runner.invoke(args=["webhooks", "subscription", preapproval["id"], "--json"])
    data = json.loads(as_json.output)
    assert [c["mp_authorized_payment_id"] for c in data["authorized_payments"]] == [
        str(charge["id"])
    ]
    missing = runner.invoke(args=["webhooks", "subscription", "nope"])
    assert missing.exit_code == 1 and "is not stored" in missing.output
