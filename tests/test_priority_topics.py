"""Fraud alerts and claims: recorded, tagged, alerted, and queued ahead of bulk work."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from test_alerts import mailbox, receiver  # noqa: F401 - fixtures
from test_subscriptions import post_subscription

from webhooks_app.extensions import db
from webhooks_app.fair_worker import make_worker
from webhooks_app.ingest import store_event
from webhooks_app.models import EventStatus, MpAlert, WebhookAttempt, WebhookEvent
from webhooks_app.notifications import Notification
from webhooks_app.queueing import get_queue, get_redis, queue_names

from conftest import make_app, post_webhook

pytestmark = pytest.mark.timeout(120)


def store(event_type: str, resource_id: str, webhook_id: str) -> int:
    notification = Notification(
        source="test",
        webhook_id=webhook_id,
        type=event_type,
        action=None,
        resource_id=resource_id,
        payload={"type": event_type, "data": {"id": resource_id}},
        raw_body="",
        headers={},
        query={},
    )
    return store_event(notification).id


def test_a_fraud_alert_overtakes_a_backlog_of_500_payments(app, sandbox):
    payment = sandbox.state.add_payment(status="approved")
    backlog = [store("payment", str(payment["id"]), f"bulk:{n}") for n in range(500)]
    alert = store("stop_delivery_op_wh", str(payment["id"]), "fraud:1")
    priority, bulk = queue_names(app)
    assert get_queue(app, name=bulk).count == 500
    assert get_queue(app, name=priority).job_ids == [f"event-{alert}-attempt-1"]

    # One burst on both queues, priority first (as worker.py); stopped after 20 jobs.
    make_worker(app, SimpleWorker, get_redis(app)).work(burst=True, max_jobs=20)
    db.session.expire_all()
    first = db.session.query(WebhookAttempt).order_by(WebhookAttempt.id).first()
    assert first.event_id == alert
    fraud = db.session.get(WebhookEvent, alert)
    assert fraud.status == EventStatus.SUCCESS
    done = db.session.query(WebhookEvent).filter(
        WebhookEvent.id.in_(backlog), WebhookEvent.processed_at.isnot(None)
    )
    assert done.count() >= 1
    assert all(event.processed_at >= fraud.processed_at for event in done)
    row = db.session.query(MpAlert).one()
    assert (row.kind, row.mp_payment_id) == ("fraud_alert", str(payment["id"]))
    assert "mp-fraud-alert" in sandbox.state.find_contact(row.payer_email)["tags"]


def test_a_claim_is_recorded_tagged_and_alerted_once(app, sandbox, receiver, mailbox):  # noqa: F811
    alerting = make_app(
        sandbox,
        ALERT_WEBHOOK_URL=receiver.url,
        ALERT_EMAIL_TO="ops@example.com",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=mailbox.port,
        SMTP_STARTTLS=False,
    )
    with alerting.app_context():
        from conftest import drain

        payment = sandbox.state.add_payment(status="approved", payer={"email": "buyer@example.com"})
        claim = sandbox.state.add_claim(resource_id=payment["id"], type="mediations")
        # GoHighLevel fails once after the claim is stored: the retry alerts no twice.
        sandbox.state.set_fault("gohighlevel", "*", status=503, times=1)
        client = alerting.test_client()
        post_subscription(client, str(claim["id"]), event_type="topic_claims_integration_wh")
        drain(alerting)
        row = db.session.query(MpAlert).one()
        assert (row.kind, row.mp_resource_id) == ("claim", str(claim["id"]))
        assert (row.mp_payment_id, row.status) == (str(payment["id"]), "opened")
        assert row.payer_email == "buyer@example.com" and row.alerted_at is not None
        assert "mp-claim" in sandbox.state.find_contact("buyer@example.com")["tags"]
        assert len(receiver.received) == 1 and "Claim" in receiver.received[0]["text"]
        assert len(mailbox.messages) == 1
        event = db.session.query(WebhookEvent).one()
        assert event.status == EventStatus.SUCCESS


def test_an_alert_that_cannot_be_sent_never_fails_the_event(app, sandbox):
    broken = make_app(sandbox, ALERT_WEBHOOK_URL="http://127.0.0.1:9/nothing")
    with broken.app_context():
        from conftest import drain

        payment = sandbox.state.add_payment(status="approved")
        post_webhook(broken.test_client(), payment["id"])  # a payment, for the payer
        client = broken.test_client()
        post_subscription(client, str(payment["id"]), event_type="stop_delivery_op_wh")
        drain(broken)
        assert {e.status for e in db.session.query(WebhookEvent)} == {EventStatus.SUCCESS}
        assert db.session.query(MpAlert).one().alerted_at is not None


def test_simulate_sends_a_claim_as_mercadopago_documents_it(app, sandbox, runner):
    from test_fraud_alerts import simulate

    from conftest import drain

    result = simulate(app, runner, "--count", "1", "--type", "topic_claims_integration_wh")
    assert result.exit_code == 0, result.output
    drain(app)
    event = db.session.query(WebhookEvent).one()
    # "Claims": data.id is the claim (signed as ?data.id), data.resource where to read it.
    assert event.query["data.id"] == event.resource_id == event.payload["data"]["id"]
    assert event.payload["data"]["resource"] == f"/post-purchase/v1/claims/{event.resource_id}"
    assert event.status == EventStatus.SUCCESS
    row = db.session.query(MpAlert).one()
    assert (row.kind, row.mp_resource_id) == ("claim", event.resource_id)
