"""Bad input to POST /webhooks/mp: the right 4xx, nothing written, never a 500."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhooks_app.extensions import db
from webhooks_app.models import WebhookEvent
from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, make_app, notification

INJECTIONS = [
    "1; DROP TABLE webhook_events; --",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "pagamento-ção-✓",
    "\u0000",
    "😀" * 10,
    "x" * 300,
]


def stored() -> int:
    db.session.expire_all()
    return db.session.query(WebhookEvent).count()


def signed_post(client, body, data_id="123", *, query=None, headers=None, content_type=None):
    request_id = str(uuid.uuid4())
    all_headers = {
        "x-request-id": request_id,
        "x-signature": sign(WEBHOOK_SECRET, data_id, request_id),
    }
    all_headers.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        "/webhooks/mp",
        query_string=query if query is not None else {"data.id": data_id, "type": "payment"},
        data=data,
        headers=all_headers,
        content_type=content_type or "application/json",
    )


def with_field(path: tuple[str, ...], value) -> dict:
    body = notification(123)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


CASES = [
    # (name, request kwargs, expected status)
    ("truncated JSON", {"body": '{"id": 1, "type": '}, 400),
    ("JSON null", {"body": "null"}, 400),
    ("JSON string", {"body": '"payment"'}, 400),
    ("JSON number", {"body": "123"}, 400),
    ("JSON array", {"body": "[]"}, 400),
    ("deeply nested JSON", {"body": "[" * 20000 + "]" * 20000}, 400),
    ("not UTF-8", {"body": b"\xff\xfe\x00"}, 400),
    (
        "form body",
        {"body": "id=1&type=payment", "content_type": "application/x-www-form-urlencoded"},
        415,
    ),
    ("XML body", {"body": "<notification/>", "content_type": "application/xml"}, 415),
    ("data is a list", {"body": with_field(("data",), [])}, 400),
    (
        "data.id is an object",
        {"body": with_field(("data", "id"), {"$gt": ""}), "query": {"type": "payment"}},
        400,
    ),
    (
        "data.id is a boolean",
        {"body": with_field(("data", "id"), True), "query": {"type": "payment"}},
        400,
    ),
    ("id is an object", {"body": with_field(("id",), {"a": 1})}, 400),
    ("id is a boolean", {"body": with_field(("id",), False)}, 400),
    ("type missing", {"body": {"id": 1, "data": {"id": "123"}}, "query": {"data.id": "123"}}, 400),
    ("query and body disagree", {"body": with_field(("data", "id"), "999")}, 400),
    ("huge body", {"body": with_field(("padding",), "x" * 200_000)}, 413),
]
for text in INJECTIONS:
    CASES += [
        (f"type={text!r}", {"body": with_field(("type",), text)}, 400),
        (f"action={text!r}", {"body": with_field(("action",), text)}, 400),
        (f"id={text!r}", {"body": with_field(("id",), text)}, 400),
        (
            f"data.id={text!r}",
            {
                "body": with_field(("data", "id"), text),
                "data_id": text,
                "query": {"data.id": text, "type": "payment"},
            },
            400,
        ),
        (
            f"x-request-id={text!r}",
            {"body": notification(123), "headers": {"x-request-id": text}},
            401,
        ),
    ]


@pytest.mark.parametrize(
    ("name", "request_kwargs", "status"), CASES, ids=[c[0][:40] for c in CASES]
)
def test_bad_notifications_get_the_right_4xx_and_write_nothing(
    client, name, request_kwargs, status
):
    kwargs = dict(request_kwargs)
    body = kwargs.pop("body")
    data_id = kwargs.pop("data_id", "123")
    response = signed_post(client, body, data_id, **kwargs)
    assert response.status_code == status, (name, response.get_data(as_text=True)[:200])
    assert response.is_json and response.json["error"]
    assert stored() == 0


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "ts=,v1=",
        "v1=abc",
        "ts=1704908010",
        "ts=1704908010,v1=" + "0" * 64,
        "ts=abc,v1=" + "0" * 64,
        "ts=1704908010,v1=zz",
        "\u00e9=\u00e9",
    ],
)
def test_missing_or_forged_signatures(client, signature):
    headers = {"x-request-id": "r"}
    if signature is not None:
        headers["x-signature"] = signature
    response = client.post(
        "/webhooks/mp?data.id=123&type=payment", json=notification(123), headers=headers
    )
    assert response.status_code == 401 and stored() == 0


def test_old_signature_refused_when_a_tolerance_is_set(sandbox, app):
    strict = make_app(sandbox, MP_SIGNATURE_TOLERANCE=300)
    client = strict.test_client()
    old = int(time.time()) - 3600
    for ts in (old, old * 1000):  # seconds and milliseconds
        headers = {"x-request-id": "r", "x-signature": sign(WEBHOOK_SECRET, "123", "r", ts=ts)}
        response = client.post(
            "/webhooks/mp?data.id=123&type=payment", json=notification(123), headers=headers
        )
        assert response.status_code == 401 and "timestamp" in response.json["error"]
    fresh_ms = int(time.time() * 1000)
    headers = {"x-request-id": "r", "x-signature": sign(WEBHOOK_SECRET, "123", "r", ts=fresh_ms)}
    response = client.post(
        "/webhooks/mp?data.id=123&type=payment", json=notification(123), headers=headers
    )
    assert response.status_code == 200
    assert stored() == 1


@pytest.mark.parametrize(
    "query",
    [
        {"topic": "payment"},
        {"topic": "payment", "id": ""},
        {"topic": "", "id": "1"},
        {"topic": "payment", "id": "1 OR 1=1"},
        {"topic": "<b>", "id": "1"},
        {"id": "5"},
    ],
)
def test_bad_ipn(client, query):
    response = client.post("/webhooks/mp", query_string=query)
    assert response.status_code == 400 and response.json["error"]
    assert stored() == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "type": st.sampled_from(["payment", "merchant_order"]) | st.text(max_size=10),
            "action": st.text(max_size=10),
            "data": st.fixed_dictionaries({}, optional={"id": json_values}) | json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
)
queries = st.dictionaries(
    st.sampled_from(["data.id", "type", "topic", "id", "x"]), st.text(max_size=12), max_size=4
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "x-signature": st.text(max_size=80).filter(lambda t: "\n" not in t and "\r" not in t),
        "x-request-id": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    query=queries,
    extra_headers=headers,
    content_type=st.sampled_from([None, "application/json", "text/plain", "application/xml"]),
)
def test_no_request_ever_produces_a_500(client, body, query, extra_headers, content_type):
    before = stored()
    response = client.post(
        "/webhooks/mp",
        query_string=query,
        data=body,
        headers={k: v for k, v in extra_headers.items()},
        content_type=content_type,
    )
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.is_json
    if response.status_code != 200:
        assert stored() == before
