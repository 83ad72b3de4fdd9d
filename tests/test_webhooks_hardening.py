"""Holes a hostile sender could use at POST /webhooks/mp (issue 15 §2-3, issue 16 §4-5)."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest

from webhooks_app import create_app
from webhooks_app.config import ProductionConfig
from webhooks_app.extensions import db
from webhooks_app.metrics import WEBHOOKS_REJECTED, WEBHOOKS_SIGNATURE_VERIFIED
from webhooks_app.models import WebhookEvent
from webhooks_app.signatures import compute_signature, sign

from conftest import WEBHOOK_SECRET, make_app, notification


def stored() -> list[WebhookEvent]:
    db.session.expire_all()
    return db.session.query(WebhookEvent).all()


def counted(counter, *labels: str) -> float:
    """This process's count for one label set (multiprocess mode: its own file)."""
    return counter.labels(*labels)._value.get()


def post(client, *, query, body, data_id="123", secret=WEBHOOK_SECRET, ts=None, signature=None):
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    if signature is None and secret:
        signature = sign(secret, data_id, request_id, ts=ts)
    if signature is not None:
        headers["x-signature"] = signature(request_id) if callable(signature) else signature
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        "/webhooks/mp",
        query_string=query,
        data=data,
        headers=headers,
        content_type="application/json",
    )


PRODUCTION = {
    "MP_ACCESS_TOKEN": "a",
    "GHL_API_TOKEN": "b",
    "GHL_LOCATION_ID": "c",
    "MP_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "LOG_FILE": None,
}


# -- §2 "Anyone can create events" ------------------------------------------------------


def test_production_refuses_ipn_and_old_signatures_by_default(app):
    assert ProductionConfig.MP_ACCEPT_IPN is False
    assert ProductionConfig.MP_SIGNATURE_TOLERANCE == 300
    production = create_app(
        ProductionConfig,
        {**PRODUCTION, "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]},
    )
    client = production.test_client()
    before = counted(WEBHOOKS_REJECTED, "ipn_refused")
    ipn = client.post("/webhooks/mp?topic=payment&id=123")
    assert ipn.status_code == 403 and "MP_ACCEPT_IPN" in ipn.json["error"]
    assert counted(WEBHOOKS_REJECTED, "ipn_refused") == before + 1
    query = {"data.id": "123", "type": "payment"}
    hour_ago = int(time.time()) - 3600
    for ts in (hour_ago, hour_ago * 1000):  # seconds and milliseconds
        old = post(client, query=query, body=notification(123), ts=ts)
        assert old.status_code == 401 and "timestamp" in old.json["error"]
    assert stored() == []
    fresh = post(client, query=query, body=notification(123), ts=int(time.time() * 1000))
    assert fresh.status_code == 200
    assert len(stored()) == 1


def test_signed_notification_without_data_id_in_the_query_is_401(client):
    """The signature covers the query's data.id; a body-only id would be unsigned."""
    before = counted(WEBHOOKS_REJECTED, "signature")
    # A valid signature of a manifest without id (as if data.id were absent), body id 123.
    response = post(client, query={"type": "payment"}, body=notification(123), data_id=None)
    assert response.status_code == 401 and "data.id" in response.json["error"]
    assert counted(WEBHOOKS_REJECTED, "signature") == before + 1
    assert stored() == []


@pytest.mark.parametrize("query", [{"type": "payment"}, {"data.id": "", "type": "payment"}])
def test_an_id_less_signature_never_vouches_for_a_body_data_id(client, query):
    """A fraud alert's signature leaves the id out (issue 16 §2); captured, it must not make
    a payment notification whose id is in the body only, nor one with an empty ?data.id=."""
    response = post(client, query=query, body=notification(123), data_id=None)
    assert response.status_code in (400, 401) and "data.id" in response.json["error"]
    assert stored() == []


def test_body_data_id_must_match_the_signed_one(client):
    response = post(client, query={"data.id": "123", "type": "payment"}, body=notification(999))
    assert response.status_code == 400 and stored() == []


@pytest.mark.parametrize("ts", ["nan", "NaN", "inf", "-inf", "-1e309", "1e3", "12.5", "0x10", "-1"])
@pytest.mark.parametrize("tolerance", [0, 300])
def test_non_numeric_ts_is_401_even_with_a_valid_hmac(sandbox, app, ts, tolerance):
    client = make_app(sandbox, MP_SIGNATURE_TOLERANCE=tolerance).test_client()

    def signature(request_id: str) -> str:
        return f"ts={ts},v1={compute_signature(WEBHOOK_SECRET, '123', request_id, ts)}"

    response = post(
        client,
        query={"data.id": "123", "type": "payment"},
        body=notification(123),
        signature=signature,
    )
    assert response.status_code == 401 and "ts" in response.json["error"]
    assert stored() == []


def test_empty_ts_is_401(client):
    response = post(
        client,
        query={"data.id": "123", "type": "payment"},
        body=notification(123),
        signature="ts=,v1=" + "0" * 64,
    )
    assert response.status_code == 401 and stored() == []


@pytest.mark.parametrize("data_id", [" 123 ", "123\n", "\t123", "123 ", "12 3", "123\r\n"])
def test_data_id_outside_mercadopagos_alphabet_is_400_even_when_signed_as_sent(client, data_id):
    body = notification(123)
    body["data"]["id"] = data_id
    response = post(
        client, query={"data.id": data_id, "type": "payment"}, body=body, data_id=data_id
    )
    assert response.status_code == 400, response.json
    assert stored() == []


def test_the_stored_resource_id_is_the_signed_one(client):
    response = post(client, query={"data.id": "123", "type": "payment"}, body=notification(123))
    assert response.status_code == 200
    assert [e.resource_id for e in stored()] == ["123"]


# -- §3 "Inputs that still give 5xx or slip through" ------------------------------------


def nested(depth: int) -> str:
    """A notification whose nesting is `depth` levels (the body itself is the first)."""
    text = json.dumps(notification(123))
    extra = "[" * (depth - 1) + '"x"' + "]" * (depth - 1)
    return text[:-1] + f', "extra": {extra}}}'


@pytest.mark.parametrize("depth", [33, 100, 980])
def test_json_nested_deeper_than_32_levels_is_400_and_stores_nothing(client, depth):
    response = post(client, query={"data.id": "123", "type": "payment"}, body=nested(depth))
    assert response.status_code == 400 and "nested" in response.json["error"]
    assert stored() == []


def test_json_nested_32_levels_is_accepted(client):
    response = post(client, query={"data.id": "123", "type": "payment"}, body=nested(32))
    assert response.status_code == 200 and len(stored()) == 1


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400_not_a_failed_insert(client, constant):
    body = json.dumps(notification(123))[:-1] + f', "amount": {constant}}}'
    response = post(client, query={"data.id": "123", "type": "payment"}, body=body)
    assert response.status_code == 400 and stored() == []


@pytest.mark.parametrize(
    ("field", "query", "body_change"),
    [
        ("query type", {"data.id": "123", "type": "payment\n"}, {"type": None}),
        ("body type", {"data.id": "123"}, {"type": "payment\n"}),
        ("action", {"data.id": "123", "type": "payment"}, {"action": "payment.updated\n"}),
        ("notification id", {"data.id": "123", "type": "payment"}, {"id": "780\n"}),
        ("query data.id", {"data.id": "123\n", "type": "payment"}, {"data": {"id": "123\n"}}),
    ],
)
def test_a_trailing_newline_is_400_in_every_webhook_field(client, field, query, body_change):
    body = notification(123)
    for key, value in body_change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = post(client, query=query, body=body, data_id=query["data.id"])
    assert response.status_code == 400, (field, response.json)
    assert stored() == []


@pytest.mark.parametrize(
    "query",
    [
        {"topic": "payment\n", "id": "1"},
        {"topic": "payment", "id": "1\n"},
        {"topic": "payment", "id": " 1"},
    ],
)
def test_a_trailing_newline_is_400_in_every_ipn_field(client, query):
    response = client.post("/webhooks/mp", query_string=query)
    assert response.status_code == 400 and stored() == []


def chunked_post(client, body: bytes):
    """A request with no Content-Length, as a chunked one reaches the app from gunicorn."""
    return client.post(
        "/webhooks/mp",
        query_string={"data.id": "123", "type": "payment"},
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "x-request-id": "r"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_limit_is_413_even_when_its_first_part_is_json(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps(notification(123)).encode()
    body = body + b" " * (limit - len(body)) + b"trailing bytes over the limit"
    before = counted(WEBHOOKS_REJECTED, "too_large")
    response = chunked_post(client, body)
    assert response.status_code == 413 and response.is_json
    assert counted(WEBHOOKS_REJECTED, "too_large") == before + 1
    assert stored() == []


def test_a_chunked_body_of_exactly_the_limit_is_read_whole(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps(notification(123)).encode()
    body += b" " * (limit - len(body))
    headers_signed = chunked_post(client, body)
    # Unsigned here (401), but read and parsed whole: not refused as too large.
    assert headers_signed.status_code == 401


# -- issue 16: rotation and the case of data.id ----------------------------------------


def test_two_secrets_during_a_rotation_each_accepted_and_counted(sandbox, app):
    rotating = make_app(sandbox, MP_WEBHOOK_SECRET="new-secret, old-secret").test_client()
    query = {"data.id": "123", "type": "payment"}
    before = [counted(WEBHOOKS_SIGNATURE_VERIFIED, index) for index in ("0", "1")]
    assert (
        post(rotating, query=query, body=notification(123), secret="new-secret").status_code == 200
    )
    for _ in range(2):
        response = post(rotating, query=query, body=notification(123), secret="old-secret")
        assert response.status_code == 200
    after = [counted(WEBHOOKS_SIGNATURE_VERIFIED, index) for index in ("0", "1")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2]
    refused = post(rotating, query=query, body=notification(123), secret="third-secret")
    assert refused.status_code == 401
    assert len(stored()) == 3


ORDER_ID = "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3"  # the id MercadoPago's SDK tests use


@pytest.mark.parametrize("lower", [True, False], ids=["guide-lower-cased", "sdk-as-received"])
def test_an_upper_case_order_id_is_accepted_signed_either_way(client, lower):
    request_id = str(uuid.uuid4())
    ts = str(int(time.time()))
    v1 = compute_signature(WEBHOOK_SECRET, ORDER_ID, request_id, ts, lower=lower)
    body = notification(ORDER_ID)
    body["type"] = "order"
    response = client.post(
        "/webhooks/mp",
        query_string={"data.id": ORDER_ID, "type": "order"},
        json=body,
        headers={"x-request-id": request_id, "x-signature": f"ts={ts},v1={v1}"},
    )
    assert response.status_code == 200, response.json
    assert [e.resource_id for e in stored()] == [ORDER_ID]


def test_no_validation_pattern_in_the_code_base_is_anchored_with_dollar():
    """`^…$` with .match() accepts "value\\n"; every validation uses fullmatch (or \\Z)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "webhooks_app"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if re.search(r"re\.compile\(\s*r?[\"'].*\$[\"']", line) or re.search(
                r"re\.match\(", line
            ):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
