"""Fraud alerts (`stop_delivery_op_wh`) in MercadoPago's documented shape: no `data.id`.

MercadoPago developers, "Additional information about notifications", "Fraud alerts"
(mercadopago/devsite-docs, guides/additional-content/your-integrations/
notification-additional-info.en.md): the payment is `data.payment_id`, the order
`data.merchant_order`; a fraud alert not answered 200/201 at once is lost for good.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from test_alerts import receiver  # noqa: F401 - fixture

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, MpAlert
from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, drain, events, make_app

pytestmark = pytest.mark.timeout(60)


def fraud_alert(payment_id: int | str, merchant_order: int | str | None = 249940988000):
    """The body MercadoPago documents, about this payment and merchant order."""
    return {
        "action": "Created",
        "api_version": "v1",
        "data": {
            "description": "desc",
            "merchant_order": merchant_order,
            "payment_id": payment_id,
            "site_id": "MLA",
        },
        "date_created": "2022-07-23T23:03:5704:00",
        "id": str(payment_id),
        "live_mode": True,
        "type": "stop_delivery_op_wh",
        "user_id": 224403329,
        "version": 1,
    }


def signed_without_id(request_id: str | None) -> dict[str, str]:
    """Headers as MercadoPago sends them when there is no data.id: the id part left out."""
    headers = {"x-signature": sign(WEBHOOK_SECRET, None, request_id)}
    if request_id is not None:
        headers["x-request-id"] = request_id
    return headers


def post(client, body: dict[str, Any], headers: dict[str, str], query: str = ""):
    return client.post(f"/webhooks/mp{query}", json=body, headers=headers)


@pytest.mark.parametrize(
    "query", ["", "?type=stop_delivery_op_wh", "?data.id=&type=stop_delivery_op_wh"]
)
def test_the_documented_fraud_alert_is_stored_processed_tagged_and_alerted_once(
    app,
    sandbox,
    receiver,  # noqa: F811
    query,
):
    alerting = make_app(sandbox, ALERT_WEBHOOK_URL=receiver.url)
    with alerting.app_context():
        payment = sandbox.state.add_payment(status="approved", payer={"email": "f@example.com"})
        order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
        request_id = str(uuid.uuid4())
        client = alerting.test_client()

        answer = post(
            client, fraud_alert(payment["id"], order["id"]), signed_without_id(request_id), query
        )
        assert answer.status_code == 200 and answer.json["status"] == "accepted"
        (event,) = events()
        assert (event.type, event.resource_id) == ("stop_delivery_op_wh", str(payment["id"]))
        assert event.webhook_id == f"mp-request:{request_id}"
        drain(alerting)

        (event,) = events()
        assert event.status == EventStatus.SUCCESS
        row = db.session.query(MpAlert).one()
        assert (row.kind, row.mp_resource_id, row.mp_payment_id) == (
            "fraud_alert",
            str(payment["id"]),
            str(payment["id"]),
        )
        assert row.merchant_order_id == str(order["id"]) and row.detail == "desc"
        assert row.raw["data"]["site_id"] == "MLA"
        assert row.payer_email == "f@example.com" and row.alerted_at is not None
        assert "mp-fraud-alert" in sandbox.state.find_contact("f@example.com")["tags"]
        (message,) = receiver.received
        assert str(payment["id"]) in message["text"] and str(order["id"]) in message["text"]

        # A second alert about the same payment (another request): no second message.
        post(client, fraud_alert(payment["id"], order["id"]), signed_without_id("again"), query)
        drain(alerting)
        assert [e.status for e in events()] == [EventStatus.SUCCESS] * 2
        assert len(receiver.received) == 1 and db.session.query(MpAlert).count() == 1


def test_a_replay_of_its_signature_with_another_payment_is_a_duplicate(app, client, sandbox):
    first = sandbox.state.add_payment(status="approved")
    other = sandbox.state.add_payment(status="approved")
    headers = signed_without_id(str(uuid.uuid4()))
    original = post(client, fraud_alert(first["id"]), headers)
    assert original.status_code == 200 and original.json["status"] == "accepted"

    # The same x-signature and x-request-id (which the signature covers), a body edited to
    # name another payment (which it does not cover), and a fresh notification id.
    edited = {**fraud_alert(other["id"]), "id": "1"}
    replay = post(client, edited, headers)
    assert replay.status_code == 200 and replay.json == {
        "status": "duplicate",
        "event_id": original.json["event_id"],
    }
    assert [e.resource_id for e in events()] == [str(first["id"])]


def test_a_forged_absent_or_request_id_less_signature_is_401_and_stores_nothing(client):
    body = fraud_alert(123)
    request_id = str(uuid.uuid4())
    forged = {"x-request-id": request_id, "x-signature": sign("not-the-secret", None, request_id)}
    for headers in (
        forged,
        {"x-request-id": request_id},  # no signature
        signed_without_id(None),  # a valid HMAC of "ts:…;" alone: nothing to key the event on
        # A signature of this request id *with* an id part, reused without ?data.id.
        {"x-request-id": request_id, "x-signature": sign(WEBHOOK_SECRET, "123", request_id)},
    ):
        answer = post(client, body, headers)
        assert answer.status_code == 401, headers
    assert events() == []


def test_with_data_id_in_the_query_the_normal_rule_applies(client, sandbox):
    payment = sandbox.state.add_payment(status="approved")
    payment_id, request_id = str(payment["id"]), str(uuid.uuid4())
    headers = {
        "x-request-id": request_id,
        "x-signature": sign(WEBHOOK_SECRET, payment_id, request_id),
    }
    query = f"?data.id={payment_id}&type=stop_delivery_op_wh"
    # The id-less signature is not accepted once the query names an id, and vice versa.
    assert (
        post(client, fraud_alert(payment_id), signed_without_id(request_id), query).status_code
        == 401
    )
    answer = post(client, fraud_alert(payment_id), headers, query)
    assert answer.status_code == 200
    (event,) = events()
    assert (event.resource_id, event.webhook_id) == (payment_id, f"mp:{payment_id}")
    # A body data.id must still equal the signed one.
    disagreeing = {**fraud_alert(payment_id), "data": {"id": "999", "payment_id": payment_id}}
    assert post(client, disagreeing, headers, query).status_code == 400


@pytest.mark.parametrize(
    ("payment_id", "status"),
    [(None, 400), ("", 400), ("58 980", 400), ("123\n", 400), (True, 400), (1.5, 400)],
)
def test_a_fraud_alert_whose_payment_id_is_missing_or_outside_the_alphabet_is_400(
    client, payment_id, status
):
    body = fraud_alert(1)
    body["data"]["payment_id"] = payment_id
    answer = post(client, body, signed_without_id(str(uuid.uuid4())))
    assert answer.status_code == status
    assert events() == []


def test_fraud_alerts_are_answered_200_at_once_with_redis_down(sandbox, app):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        client = down.test_client()
        started = time.monotonic()
        answer = post(client, fraud_alert(58980959081), signed_without_id(str(uuid.uuid4())))
        elapsed = time.monotonic() - started
        assert answer.status_code == 200 and answer.json["status"] == "accepted"
        assert elapsed < 2.0  # MercadoPago never sends it again: no waiting for Redis
        (event,) = events()
        assert (event.type, event.status) == ("stop_delivery_op_wh", EventStatus.PENDING)
        assert event.next_retry_at is not None  # due: the reconciler queues it when Redis is back


def simulate(app, runner, *args: str):
    """Run `flask webhooks simulate` against the app served on a loopback port."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
        return runner.invoke(args=["webhooks", "simulate", "--url", url, *args])
    finally:
        server.shutdown()


def test_simulate_sends_the_documented_fraud_alert(app, sandbox, runner):
    result = simulate(app, runner, "--count", "1", "--type", "stop_delivery_op_wh")
    assert result.exit_code == 0, result.output
    drain(app)
    (event,) = events()
    assert event.status == EventStatus.SUCCESS and event.webhook_id.startswith("mp-request:")
    assert "id" not in event.payload["data"] and "data.id" not in event.query
    assert event.payload["data"]["payment_id"] == int(event.resource_id)
    row = db.session.query(MpAlert).one()
    assert row.mp_payment_id == event.resource_id
    order = sandbox.state.get_merchant_order(row.merchant_order_id)
    assert order is not None and [p["id"] for p in order["payments"]] == [int(row.mp_payment_id)]


def test_the_unsigned_description_is_kept_short_and_on_one_line():
    from webhooks_app.handlers.risk import DESCRIPTION_CHARS, short_text

    assert short_text("Hold\nit\x00 now\r\n") == "Hold it  now"
    assert len(short_text("x" * 5000)) == DESCRIPTION_CHARS
    assert short_text({"nested": 1}) is None and short_text("  \n ") is None
