"""Topics no handler takes: stored whatever their shape, then `ignored` with a reason.

Shapes from MercadoPago developers, "Additional information about notifications"
(mercadopago/devsite-docs, guides/additional-content/your-integrations/
notification-additional-info.en.md): `delivery` (no query string, `_id`, `topic`,
`resource`; retried every 12 hours until answered 200) and `automatic-payments` (Card
Updater: `data.customer_id`, no `data.id`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from webhooks_app.models import EventStatus
from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, api_headers, events, make_app, run_worker

pytestmark = pytest.mark.timeout(60)

DELIVERY = {
    "_id": "f9f08571-1f65-4c46-9e0a-c0f43faas1557e",
    "topic": "delivery",
    "resource": "/shipments/12345",
    "user_id": 1793791954,
    "application_id": "924152943338358",
    "sent": "2021-11-01T02:02:02.002Z",
    "attempts": 1,
    "received": "2021-11-01T02:02:02.002Z",
    "actions": [],
}
CARD_UPDATED = {
    "action": "card.updated",
    "api_version": "v1",
    "application_id": 8339021212080291,
    "data": {
        "customer_id": "12345678-aluyasdhfyt",
        "new_card_id": 50000102202,
        "old_card_id": 50000006036,
    },
    "date_created": "2024-01-11T15:23:53-03:00",
    "id": "a47fc06844bf4e418a03aeab1479c496",
    "live_mode": True,
    "type": "automatic-payments",
    "user_id": 1197520450,
    "version": 1,
}
MP_CONNECT = {"id": 7, "type": "mp-connect", "action": "application.authorized"}


def post(client, body: dict[str, Any], *, signed: bool = True, request_id: str | None = None):
    """POST with no query string, signed as MercadoPago does without a data.id."""
    request_id = request_id or str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    if signed:
        headers["x-signature"] = sign(WEBHOOK_SECRET, None, request_id)
    return client.post("/webhooks/mp", json=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "event_type", "resource_id"),
    [
        (DELIVERY, "delivery", "12345"),
        (CARD_UPDATED, "automatic-payments", "12345678-aluyasdhfyt"),
        (MP_CONNECT, "mp-connect", ""),
    ],
)
def test_unhandled_shapes_are_stored_then_ignored_with_a_reason(
    app, client, body, event_type, resource_id
):
    request_id = str(uuid.uuid4())
    answer = post(client, body, request_id=request_id)
    assert answer.status_code == 200 and answer.json["status"] == "accepted", answer.json
    run_worker(app)
    (event,) = events()
    assert (event.type, event.resource_id) == (event_type, resource_id)
    assert event.webhook_id == f"mp-request:{request_id}"
    reason = f"topic {event_type!r} is not handled by this service"
    assert (event.status, event.last_error) == (EventStatus.IGNORED, reason)
    assert [(a.outcome, a.error) for a in event.attempt_log] == [("ignored", reason)]
    assert event.payload == body  # kept as received

    # A redelivery (same x-request-id, which the signature covers) is a duplicate.
    again = post(client, body, request_id=request_id)
    assert again.json == {"status": "duplicate", "event_id": event.id}


def test_an_unhandled_topics_reason_is_shown_by_the_admin_the_api_and_the_cli(
    app, client, runner, sandbox
):
    from test_admin import AUTH, PASSWORD, USERNAME

    post(client, DELIVERY)
    run_worker(app)
    (event,) = events()
    admin = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD).test_client()
    page = admin.get(f"/admin/events/{event.id}", headers=AUTH).text
    assert "Ignored because" in page and "topic &#39;delivery&#39; is not handled" in page
    shown = client.get(f"/api/webhook-events/{event.id}", headers=api_headers()).json
    reason = "topic 'delivery' is not handled by this service"
    assert (shown["status"], shown["last_error"]) == ("ignored", reason)
    assert shown["attempt_log"][0]["error"] == reason
    listed = client.get("/api/webhook-events?status=ignored", headers=api_headers()).json
    assert [e["last_error"] for e in listed["events"]] == [reason]
    output = runner.invoke(args=["webhooks", "show", str(event.id)]).output
    assert reason in output


def test_signatures_still_apply_to_unhandled_topics(app, client):
    request_id = str(uuid.uuid4())
    for headers in (
        {"x-request-id": request_id},  # unsigned
        {"x-request-id": request_id, "x-signature": sign("other", None, request_id)},
        {"x-signature": sign(WEBHOOK_SECRET, None, None)},  # no x-request-id to key it on
    ):
        answer = client.post("/webhooks/mp", json=DELIVERY, headers=headers)
        assert answer.status_code == 401, headers
    # With data.id in the body but not in the query, issue 15's rule holds for them too.
    body = {"id": 8, "type": "point_integration_wh", "data": {"id": "PI-1"}}
    assert post(client, body).status_code == 401
    assert events() == []


def test_handled_topics_still_need_their_resource_id(client):
    for body in (
        {"id": 9, "type": "payment", "action": "payment.updated"},
        {"id": 10, "type": "topic_chargebacks_wh", "data": {}},
        {"id": 11, "type": "stop_delivery_op_wh", "data": {"merchant_order": 1}},
    ):
        answer = post(client, body)
        assert answer.status_code == 400 and "missing resource id" in answer.json["error"]
    assert events() == []


def test_without_a_secret_the_delivery_form_is_keyed_on_its_request_id_or_its_own_id(sandbox, app):
    unsigned = make_app(sandbox, MP_WEBHOOK_SECRET=None)
    with unsigned.app_context():
        client = unsigned.test_client()
        first = client.post(
            "/webhooks/mp", data=json.dumps(DELIVERY), content_type="application/json"
        )
        again = client.post("/webhooks/mp", json=DELIVERY)
        assert first.json["status"] == "accepted" and again.json["status"] == "duplicate"
        (event,) = events()
        assert event.webhook_id == f"mp:{DELIVERY['_id']}"
