"""Parsing the two MercadoPago notification forms."""

import json

import pytest

from webhooks_app.notifications import InvalidNotification, parse_notification

WEBHOOK_BODY = {
    "id": 12345,
    "live_mode": True,
    "type": "payment",
    "action": "payment.updated",
    "data": {"id": "999"},
}


def parse(body=b"", content_type="application/json", query=None, headers=None):
    return parse_notification(body, content_type, query or {}, headers or {})


def test_webhook_form():
    n = parse(
        json.dumps(WEBHOOK_BODY).encode(),
        query={"data.id": "999", "type": "payment"},
        headers={"x-request-id": "r1", "x-signature": "ts=1,v1=a", "authorization": "x"},
    )
    assert (n.source, n.webhook_id, n.type, n.action, n.resource_id) == (
        "webhook",
        "mp:12345",
        "payment",
        "payment.updated",
        "999",
    )
    assert n.signed_data_id == "999"
    assert n.headers == {"x-request-id": "r1", "x-signature": "ts=1,v1=a"}  # no authorization


def test_webhook_resource_from_body_when_query_lacks_it():
    n = parse(json.dumps(WEBHOOK_BODY).encode())
    assert n.resource_id == "999" and n.signed_data_id is None


def test_webhook_without_notification_id_gets_a_stable_derived_id():
    body = json.dumps({"type": "payment", "data": {"id": "5"}}).encode()
    first = parse(body, headers={"x-request-id": "r1"})
    again = parse(body, headers={"x-request-id": "r1"})
    other = parse(body, headers={"x-request-id": "r2"})
    assert first.webhook_id == again.webhook_id != other.webhook_id


def test_ipn_form_with_empty_body():
    n = parse(
        b"",
        content_type=None,
        query={"topic": "payment", "id": "777"},
        headers={"x-request-id": "r1"},
    )
    assert (n.source, n.type, n.resource_id, n.payload) == ("ipn", "payment", "777", None)
    assert n.webhook_id.startswith("ipn:payment:777:")
    assert (
        parse(b"", None, {"topic": "payment", "id": "777"}, {"x-request-id": "r1"}).webhook_id
        == n.webhook_id
    )


def test_ipn_resource_from_body_url():
    body = json.dumps(
        {"resource": "https://api.mercadolibre.com/merchant_orders/42", "topic": "merchant_order"}
    ).encode()
    n = parse(body, query={"topic": "merchant_order"})
    assert (n.type, n.resource_id) == ("merchant_order", "42")


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "message"),
    [
        (b"{not json", "application/json", {}, 400, "malformed JSON"),
        (b"<xml/>", "text/xml", {}, 415, "unsupported content"),
        (b"[1, 2]", "application/json", {}, 400, "must be an object"),
        (b"", None, {}, 400, "empty body"),
        (b'{"type": "payment"}', "application/json", {}, 400, "missing resource id"),
        (
            b'{"type": "payment", "data": {"id": ""}}',
            "application/json",
            {},
            400,
            "missing resource",
        ),
        (b'{"type": "payment", "data": {"id": "a b"}}', "application/json", {}, 400, "resource id"),
        (b'{"data": {"id": "1"}}', "application/json", {}, 400, "missing notification type"),
        (b'{"type": 5, "data": {"id": "1"}}', "application/json", {}, 400, "type"),
        (
            b'{"type": "payment", "data": {"id": "1"}}',
            "application/json",
            {"data.id": "2"},
            400,
            "disagree",
        ),
        (b"", None, {"topic": "payment"}, 400, "missing resource id"),
        (b"\xff\xfe", "application/json", {}, 400, "UTF-8"),
    ],
)
def test_bad_input(body, content_type, query, status, message):
    with pytest.raises(InvalidNotification) as excinfo:
        parse(body, content_type, query)
    assert excinfo.value.status_code == status
    assert message in excinfo.value.message


FRAUD_ALERT = {
    "action": "Created",
    "api_version": "v1",
    "data": {
        "description": "desc",
        "merchant_order": 249940988000,
        "payment_id": 58980959081,
        "site_id": "MLA",
    },
    "date_created": "2022-07-23T23:03:5704:00",
    "id": "58980959081",
    "live_mode": True,
    "type": "stop_delivery_op_wh",
    "user_id": 224403329,
    "version": 1,
}


def test_a_fraud_alert_without_data_id_names_its_payment_by_data_payment_id():
    n = parse(json.dumps(FRAUD_ALERT).encode(), headers={"x-request-id": "r-1"})
    assert (n.type, n.resource_id, n.id_source) == ("stop_delivery_op_wh", "58980959081", "topic")
    assert n.signed_data_id is None
    # Keyed on the request id the signature covers, not on the unsigned body.
    assert n.webhook_id == "mp-request:r-1"
    without_request_id = parse(json.dumps(FRAUD_ALERT).encode())
    assert without_request_id.webhook_id == "mp:58980959081"


def test_where_the_resource_id_comes_from():
    body = json.dumps(WEBHOOK_BODY).encode()
    assert parse(body, query={"data.id": "999"}).id_source == "query"
    assert parse(body).id_source == "body"
    delivery = {"_id": "f9f0-1f65", "topic": "delivery", "resource": "/shipments/12345"}
    n = parse(json.dumps(delivery).encode(), headers={"x-request-id": "r-2"})
    assert (n.type, n.resource_id, n.id_source, n.webhook_id) == (
        "delivery",
        "12345",
        "none",
        "mp-request:r-2",
    )
    assert parse(json.dumps(delivery).encode()).webhook_id == "mp:f9f0-1f65"
    odd = {"type": "mp-connect", "resource": "/a/b c", "data": {"customer_id": ["x"]}}
    assert parse(json.dumps(odd).encode()).resource_id == ""


def test_an_unhandled_ipn_topic_without_id_is_stored_with_none():
    n = parse(b"", content_type=None, query={"topic": "mp-connect"})
    assert (n.source, n.type, n.resource_id) == ("ipn", "mp-connect", "")


@pytest.mark.parametrize(
    ("body", "query", "headers", "message"),
    [
        # An empty ?data.id= must not let the body's id stand in for the signed one.
        (WEBHOOK_BODY, {"data.id": ""}, {}, "missing resource id"),
        ({"type": "stop_delivery_op_wh", "data": {}}, {}, {}, "missing resource id"),
        (FRAUD_ALERT, {}, {"x-request-id": "r 1"}, "x-request-id"),
        (FRAUD_ALERT, {}, {"x-request-id": "r1\n"}, "x-request-id"),
    ],
)
def test_bad_input_without_data_id(body, query, headers, message):
    with pytest.raises(InvalidNotification) as excinfo:
        parse(json.dumps(body).encode(), query=query, headers=headers)
    assert excinfo.value.status_code == 400
    assert message in excinfo.value.message
