"""Fraud alerts and claims (`mp_alerts`) shown by the admin, the API and the CLI."""

from __future__ import annotations

import uuid

import pytest
from test_admin import AUTH, PASSWORD, USERNAME
from test_fraud_alerts import fraud_alert
from test_subscriptions import post_subscription

from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, api_headers, drain, make_app, post_webhook

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def admin(app, sandbox):
    return make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)


@pytest.fixture
def alerts(admin, sandbox):
    """One processed fraud alert (with its merchant order) and one processed claim."""
    state = sandbox.state
    flagged = state.add_payment(status="approved", payer={"email": "fraud@example.com"})
    order = state.add_merchant_order(payment_ids=[flagged["id"]])
    claimed = state.add_payment(status="approved", payer={"email": "claim@example.com"})
    claim = state.add_claim(resource_id=claimed["id"])
    with admin.app_context():
        client = admin.test_client()
        request_id = str(uuid.uuid4())
        answer = client.post(
            "/webhooks/mp",
            json=fraud_alert(flagged["id"], order["id"]),
            headers={
                "x-request-id": request_id,
                "x-signature": sign(WEBHOOK_SECRET, None, request_id),
            },
        )
        assert answer.status_code == 200
        post_subscription(client, str(claim["id"]), event_type="topic_claims_integration_wh")
        post_webhook(client, claimed["id"])  # the payment's own page needs it stored
        drain(admin)
    return {
        "fraud_payment": str(flagged["id"]),
        "order": str(order["id"]),
        "claim_payment": str(claimed["id"]),
        "claim": str(claim["id"]),
    }


def test_the_api_lists_alerts_by_kind_and_payment(client, alerts):
    listed = client.get("/api/alerts", headers=api_headers()).json["alerts"]
    assert [(a["kind"], a["mp_resource_id"]) for a in listed] == [
        ("claim", alerts["claim"]),
        ("fraud_alert", alerts["fraud_payment"]),
    ]
    fraud = client.get("/api/alerts?kind=fraud_alert", headers=api_headers()).json["alerts"]
    assert [(a["mp_payment_id"], a["merchant_order_id"], a["payer_email"]) for a in fraud] == [
        (alerts["fraud_payment"], alerts["order"], "fraud@example.com")
    ]
    assert fraud[0]["status"] == "stop_delivery" and fraud[0]["alerted_at"]
    by_payment = client.get(
        f"/api/alerts?payment_id={alerts['claim_payment']}", headers=api_headers()
    ).json["alerts"]
    assert [a["kind"] for a in by_payment] == ["claim"]
    assert client.get("/api/alerts?limit=1", headers=api_headers()).json["alerts"][0]["kind"] == (
        "claim"
    )
    bad = client.get("/api/alerts?kind=chargeback", headers=api_headers())
    assert bad.status_code == 400 and "kind" in bad.json["error"]
    assert client.get("/api/alerts").status_code == 401


def test_the_cli_lists_alerts(runner, alerts):
    output = runner.invoke(args=["webhooks", "alerts"]).output
    assert "2 alert(s)" in output
    assert f"merchant order {alerts['order']}" in output and "claim@example.com" in output
    claims = runner.invoke(args=["webhooks", "alerts", "--kind", "claim"]).output
    assert alerts["claim"] in claims and alerts["fraud_payment"] not in claims
    by_payment = runner.invoke(
        args=["webhooks", "alerts", "--payment-id", alerts["fraud_payment"]]
    ).output
    assert "fraud_alert" in by_payment and "1 alert(s)" in by_payment
    assert runner.invoke(args=["webhooks", "alerts", "--kind", "other"]).exit_code == 2


def test_the_admin_shows_alerts_and_a_payments_page_lists_its_own(admin, alerts):
    with admin.app_context():
        web = admin.test_client()
        page = web.get("/admin/alerts", headers=AUTH)
        assert page.status_code == 200
        assert 'href="/admin/alerts"' in page.text  # the nav link
        assert alerts["claim"] in page.text and alerts["order"] in page.text
        assert f'href="/admin/payments/{alerts["fraud_payment"]}"' in page.text
        assert "fraud@example.com" in page.text and "stop_delivery" in page.text
        claims = web.get("/admin/alerts?kind=claim", headers=AUTH).text
        assert alerts["claim"] in claims and alerts["order"] not in claims
        assert web.get("/admin/alerts?kind=nope", headers=AUTH).status_code == 400

        payment = web.get(f"/admin/payments/{alerts['claim_payment']}", headers=AUTH)
        assert payment.status_code == 200 and "Fraud alerts and claims" in payment.text
        assert alerts["claim"] in payment.text and alerts["order"] not in payment.text
