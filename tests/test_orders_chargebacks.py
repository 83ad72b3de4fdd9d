"""The merchant_order and chargebacks topics, end to end through the real sandbox."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from test_alerts import Receiver

from webhooks_app.extensions import db
from webhooks_app.handlers import TEST_NOTIFICATION
from webhooks_app.models import EventStatus, Payment
from webhooks_app.resources import Chargeback, MerchantOrder, MerchantOrderPayment

from conftest import drain, events, make_app, post_topic

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("topic", ["topic_merchant_order_wh", "merchant_order"])
def test_an_order_before_its_payments_processes_them_and_tags_the_payer(
    app, client, sandbox, topic
):
    first = sandbox.state.add_payment(status="approved", transaction_amount=60)
    second = sandbox.state.add_payment(status="approved", transaction_amount=40)
    order = sandbox.state.add_merchant_order(payment_ids=[first["id"], second["id"]])
    assert order["payer"]["email"] == ""  # deprecated by MercadoPago: the payments have it

    assert post_topic(client, topic, order["id"]).status_code == 200
    drain(app)

    stored = db.session.scalars(select(MerchantOrder)).one()
    assert stored.mp_order_id == str(order["id"])
    assert (stored.status, stored.order_status) == ("closed", "paid")
    assert stored.payment_ids == [str(first["id"]), str(second["id"])]
    assert str(stored.paid_amount) == "100.00"
    links = db.session.scalars(select(MerchantOrderPayment.mp_payment_id)).all()
    assert sorted(links) == sorted([str(first["id"]), str(second["id"])])
    payment_events = events("payment")
    assert {e.resource_id for e in payment_events} == {str(first["id"]), str(second["id"])}
    assert {e.source for e in payment_events} == {"merchant_order"}
    assert all(e.status == EventStatus.SUCCESS for e in events())
    for payment in (first, second):
        contact = sandbox.state.find_contact(payment["payer"]["email"])
        assert contact is not None and "mp-payment-approved" in contact["tags"]
    assert len(db.session.scalars(select(Payment)).all()) == 2

    # A redelivered order (another notification id) creates no payment event twice.
    assert post_topic(client, topic, order["id"]).status_code == 200
    drain(app)
    assert len(events("payment")) == 2
    assert len(events(topic)) == 2


def test_an_order_refetches_a_payment_we_hold_an_older_copy_of(app, client, sandbox):
    payment = sandbox.state.add_payment(status="pending")
    order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
    post_topic(client, "merchant_order", order["id"])
    drain(app)
    assert len(events("payment")) == 1

    sandbox.state.add_payment(id=payment["id"], status="approved")
    order = sandbox.state.add_merchant_order(id=order["id"], payment_ids=[payment["id"]])
    post_topic(client, "merchant_order", order["id"])
    drain(app)
    assert len(events("payment")) == 2
    db.session.expire_all()
    assert db.session.scalars(select(Payment.status)).one() == "approved"


def test_an_order_fault_is_retried_like_a_payment(app, client, sandbox):
    order = sandbox.state.add_merchant_order()
    sandbox.state.set_fault("mercadopago", str(order["id"]), status=503, times=2)
    post_topic(client, "topic_merchant_order_wh", order["id"])
    drain(app)
    (event,) = events("topic_merchant_order_wh")
    assert event.status == EventStatus.SUCCESS and event.attempts == 3
    assert len(events("payment")) == 1


def test_a_chargeback_is_recorded_tagged_and_alerted_once(app, client, sandbox):
    receiver = Receiver()
    try:
        alerting = make_app(sandbox, ALERT_WEBHOOK_URL=receiver.url)
        with alerting.app_context():
            web = alerting.test_client()
            payment = sandbox.state.add_payment(status="approved", transaction_amount=75)
            chargeback = sandbox.state.add_chargeback(payment_id=payment["id"])
            assert post_topic(web, "topic_chargebacks_wh", chargeback["id"]).status_code == 200
            drain(alerting)

            stored = db.session.scalars(select(Chargeback)).one()
            assert stored.mp_chargeback_id == str(chargeback["id"])
            assert stored.mp_payment_id == str(payment["id"])
            assert (str(stored.amount), stored.currency) == ("75.00", "BRL")
            assert stored.coverage_eligible is True and stored.documentation_status == "pending"
            assert stored.date_documentation_deadline is not None
            contact = sandbox.state.find_contact(payment["payer"]["email"])
            assert contact is not None and "mp-chargeback" in contact["tags"]
            assert stored.ghl_contact_id == contact["id"]
            assert len(receiver.received) == 1
            assert str(chargeback["id"]) in receiver.received[0]["text"]

            # An update of the same chargeback: recorded, no second alert.
            sandbox.state.add_chargeback(id=chargeback["id"], documentation_status="valid")
            post_topic(web, "chargebacks", chargeback["id"])
            drain(alerting)
            db.session.expire_all()
            assert db.session.scalars(select(Chargeback.documentation_status)).one() == "valid"
            assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_a_chargeback_alert_that_cannot_be_sent_never_fails_processing(app, client, sandbox):
    receiver = Receiver(status=500)
    try:
        alerting = make_app(sandbox, ALERT_WEBHOOK_URL=receiver.url)
        with alerting.app_context():
            chargeback = sandbox.state.add_chargeback()
            post_topic(alerting.test_client(), "chargebacks", chargeback["id"])
            drain(alerting)
            (event,) = events()
            assert event.status == EventStatus.SUCCESS
            assert len(receiver.received) == 1
            assert db.session.scalars(select(Chargeback.alerted_at)).one() is not None
    finally:
        receiver.close()


def test_a_live_chargeback_not_found_yet_is_retried(app, client, sandbox):
    chargeback_id = "9000000001"
    post_topic(client, "topic_chargebacks_wh", chargeback_id)
    sandbox.state.set_fault("mercadopago", chargeback_id, status=429, times=1)
    drain(app, until=lambda: bool(events()[0].attempts >= 2))
    (event,) = events()
    assert event.status == EventStatus.PENDING and "404" in (event.last_error or "")
    sandbox.state.add_chargeback(id=chargeback_id)
    drain(app)
    (event,) = events()
    assert event.status == EventStatus.SUCCESS
    assert db.session.scalars(select(Chargeback.mp_chargeback_id)).one() == chargeback_id


@pytest.mark.parametrize(
    "topic",
    [
        "topic_merchant_order_wh",
        "topic_chargebacks_wh",
        "subscription_preapproval",
        "topic_claims_integration_wh",
    ],
)
def test_the_panels_simulated_notification_of_any_topic_is_ignored(app, client, topic):
    """MercadoPago's "Simular" offers every topic, each about an id its API answers 404 for:
    `live_mode: false` + 404 ends `ignored` at the first attempt, whatever the topic."""
    post_topic(client, topic, "990000000123", live_mode=False)
    drain(app)
    (event,) = events()
    assert (event.status, event.attempts) == (EventStatus.IGNORED, 1)
    assert event.last_error == TEST_NOTIFICATION


def test_the_sandbox_answers_mercadopago_errors_for_unknown_orders_and_chargebacks(sandbox):
    import requests

    headers = {"Authorization": "Bearer TEST-token"}
    for path in ("/merchant_orders/123", "/v1/chargebacks/123"):
        response = requests.get(sandbox.url + path, headers=headers, timeout=5)
        assert response.status_code == 404
        assert set(response.json()) == {"message", "error", "status", "cause"}
        assert response.json()["status"] == 404


def test_api_and_cli_show_orders_and_chargebacks(app, client, sandbox, runner):
    from conftest import api_headers

    payment = sandbox.state.add_payment(status="approved")
    order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
    chargeback = sandbox.state.add_chargeback(payment_id=payment["id"])
    post_topic(client, "merchant_order", order["id"])
    post_topic(client, "chargebacks", chargeback["id"])
    drain(app)

    shown = client.get(f"/api/merchant-orders/{order['id']}", headers=api_headers())
    assert shown.status_code == 200
    assert shown.json["payment_ids"] == [str(payment["id"])]
    assert [p["mp_payment_id"] for p in shown.json["payments"]] == [str(payment["id"])]
    missing = client.get("/api/merchant-orders/1", headers=api_headers())
    assert missing.status_code == 404
    listed = client.get(f"/api/chargebacks?payment_id={payment['id']}", headers=api_headers())
    assert [c["mp_chargeback_id"] for c in listed.json["chargebacks"]] == [chargeback["id"]]
    assert client.get("/api/chargebacks?payment_id=1", headers=api_headers()).json == {
        "chargebacks": []
    }

    text = runner.invoke(args=["webhooks", "order", str(order["id"])]).output
    assert "closed / paid" in text and f"payment {payment['id']}: approved" in text
    text = runner.invoke(args=["webhooks", "chargebacks"]).output
    assert chargeback["id"] in text and "1 chargeback(s)" in text


@pytest.mark.parametrize("topic", ["merchant_order", "chargebacks"])
@pytest.mark.parametrize("ipn", [False, True])
def test_simulate_creates_the_resource_and_notifies(app, sandbox, runner, topic, ipn):
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
        args = ["webhooks", "simulate", "--url", url, "--count", "1", "--type", topic]
        result = runner.invoke(args=args + (["--ipn"] if ipn else []))
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    drain(app)
    expected = (
        topic
        if ipn
        else {"merchant_order": "topic_merchant_order_wh"}.get(topic, "topic_chargebacks_wh")
    )
    assert [e.type for e in events(expected)] and all(
        e.status == EventStatus.SUCCESS for e in events()
    )
    table = MerchantOrder if topic == "merchant_order" else Chargeback
    assert len(db.session.scalars(select(table)).all()) == 1


def test_admin_shows_orders_and_chargebacks_and_them_on_the_payment_page(app, sandbox):
    from test_admin import AUTH, PASSWORD, USERNAME

    admin = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    with admin.app_context():
        web = admin.test_client()
        payment = sandbox.state.add_payment(status="approved")
        order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
        chargeback = sandbox.state.add_chargeback(payment_id=payment["id"])
        post_topic(web, "merchant_order", order["id"])
        post_topic(web, "chargebacks", chargeback["id"])
        drain(admin)

        page = web.get(f"/admin/merchant-orders/{order['id']}", headers=AUTH)
        assert page.status_code == 200
        assert f'href="/admin/payments/{payment["id"]}"' in page.text and "paid" in page.text
        assert web.get("/admin/merchant-orders/1", headers=AUTH).status_code == 404
        page = web.get("/admin/chargebacks", headers=AUTH)
        assert page.status_code == 200 and chargeback["id"] in page.text
        page = web.get(f"/admin/payments/{payment['id']}", headers=AUTH)
        assert f'href="/admin/merchant-orders/{order["id"]}"' in page.text
        assert chargeback["id"] in page.text


def test_a_chargeback_fault_and_delay_are_retried_like_a_payment(app, client, sandbox):
    chargeback = sandbox.state.add_chargeback()
    sandbox.state.set_fault("mercadopago", chargeback["id"], status=502, times=1, delay=0.2)
    post_topic(client, "topic_chargebacks_wh", chargeback["id"])
    drain(app)
    (event,) = events()
    assert event.status == EventStatus.SUCCESS and event.attempts == 2
    calls = sandbox.state.calls(api="mercadopago", path_contains="/v1/chargebacks/")
    assert [call["status"] for call in calls] == [502, 200]
