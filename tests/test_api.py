"""GET /api/webhook-events and /api/payments."""

import pytest

from conftest import api_headers, make_app, post_webhook, run_worker


def test_api_requires_the_token(client):
    assert client.get("/api/webhook-events").status_code == 401
    wrong = client.get("/api/webhook-events", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json["error"]
    basic = client.get("/api/payments", headers={"Authorization": "Basic dGVzdC1hcGktdG9rZW4="})
    assert basic.status_code == 401


def test_api_without_a_configured_token_is_503(sandbox):
    app = make_app(sandbox, API_TOKEN=None)
    response = app.test_client().get("/api/webhook-events", headers=api_headers())
    assert response.status_code == 503
    assert "API_TOKEN" in response.json["error"]


def test_list_events_with_filters(app, client, sandbox):
    payment = sandbox.state.add_payment()
    post_webhook(client, payment["id"])
    post_webhook(client, 404404)  # will keep failing: stays pending after one attempt
    client.post("/webhooks/mp?topic=merchant_order&id=5")
    run_worker(app)

    everything = client.get("/api/webhook-events", headers=api_headers()).json
    assert everything["total"] == 3 and len(everything["events"]) == 3
    first = everything["events"][0]
    for field in (
        "id",
        "webhook_id",
        "type",
        "action",
        "resource_id",
        "status",
        "attempts",
        "last_error",
        "next_retry_at",
        "received_at",
        "processed_at",
    ):
        assert field in first

    success = client.get("/api/webhook-events?status=success", headers=api_headers()).json
    assert [e["resource_id"] for e in success["events"]] == [str(payment["id"])]
    assert success["events"][0]["payment_id"] == str(payment["id"])
    pending = client.get("/api/webhook-events?status=pending", headers=api_headers()).json
    assert pending["total"] == 1 and "404" in pending["events"][0]["last_error"]
    orders = client.get("/api/webhook-events?type=merchant_order", headers=api_headers()).json
    assert [e["status"] for e in orders["events"]] == ["ignored"]
    limited = client.get("/api/webhook-events?limit=1", headers=api_headers()).json
    assert limited["total"] == 3 and len(limited["events"]) == 1


@pytest.mark.parametrize("query", ["status=nope", "limit=abc", "limit=0"])
def test_bad_filters_are_400(client, query):
    response = client.get(f"/api/webhook-events?{query}", headers=api_headers())
    assert response.status_code == 400 and response.json["error"]


def test_list_payments(app, client, sandbox):
    payment = sandbox.state.add_payment(status="approved")
    post_webhook(client, payment["id"])
    run_worker(app)
    payments = client.get("/api/payments", headers=api_headers()).json["payments"]
    assert len(payments) == 1
    assert payments[0]["mp_payment_id"] == str(payment["id"])
    assert payments[0]["status"] == "approved"
    assert payments[0]["tags_applied"] == ["mp-payment-approved"]
