"""End to end with real processes: gunicorn, worker.py and scheduler.py."""

from __future__ import annotations

import pytest
import requests
from test_fraud_alerts import fraud_alert

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, MpAlert, WebhookEvent
from webhooks_app.resources import AuthorizedPayment

from conftest import notification
from processes import Processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def service(app, sandbox, tmp_path):
    """The service as deployed: gunicorn (Procfile settings), a worker and the scheduler."""
    yield from Processes.deployed(tmp_path, sandbox.url)


def final_events(ids: list[int], timeout: float = 60.0) -> dict[int, WebhookEvent]:
    from processes import wait_until

    def finished():
        db.session.expire_all()
        events = {e.id: e for e in db.session.query(WebhookEvent).filter(WebhookEvent.id.in_(ids))}
        done = len(events) == len(ids) and all(
            e.status in EventStatus.FINAL for e in events.values()
        )
        return events if done else None

    return wait_until(finished, timeout, 0.2, "for events to finish")


def test_signed_notifications_travel_through_the_whole_system(service, sandbox):
    healthy = sandbox.state.add_payment(status="approved")
    flaky = sandbox.state.add_payment(status="rejected")
    sandbox.state.set_fault("mercadopago", str(flaky["id"]), status=502, times=1)

    answers = [service.send(healthy["id"]), service.send(flaky["id"])]
    ipn = requests.post(
        f"{service.url}/webhooks/mp",
        params={"topic": "payment", "id": healthy["id"]},
        headers={"x-request-id": "ipn-1"},
        timeout=10,
    )
    unsigned = requests.post(
        f"{service.url}/webhooks/mp?data.id=1&type=payment", json=notification(1), timeout=10
    )
    assert [a.status_code for a in answers] == [200, 200] and ipn.status_code == 200
    assert unsigned.status_code == 401

    ids = [a.json()["event_id"] for a in answers] + [ipn.json()["event_id"]]
    events = final_events(ids)
    assert [events[i].status for i in ids] == [EventStatus.SUCCESS] * 3
    # The flaky one failed once and was retried through rq-scheduler.
    assert [events[i].attempts for i in ids] == [1, 2, 1]
    log = events[ids[1]].attempt_log
    retry_gap = (log[1].started_at - log[0].finished_at).total_seconds()
    assert 1.0 <= retry_gap < 4.0  # RETRY_DELAYS[0] is 1 s in testing
    tags = {c["email"]: c["tags"] for c in sandbox.state.contacts()}
    assert tags == {
        healthy["payer"]["email"]: ["mp-payment-approved"],
        flaky["payer"]["email"]: ["mp-payment-rejected"],
    }


def test_one_notification_of_every_topic_through_the_whole_system(service, sandbox):
    """Issue 16's acceptance: each topic MercadoPago sends, through gunicorn, the worker
    (both queues) and the scheduler, ends as it should in the database and in GHL."""
    state = sandbox.state
    paid = state.add_payment(status="approved")
    ordered = state.add_payment(status="approved")
    order = state.add_merchant_order(payment_ids=[ordered["id"]])
    disputed = state.add_payment(status="approved")
    chargeback = state.add_chargeback(payment_id=disputed["id"])
    subscription = state.add_preapproval(status="authorized", payer_email="sub@example.com")
    # A charge of a subscription we never heard of: both come in through events of their own.
    charged = state.add_preapproval(status="authorized", payer_email="member@example.com")
    charge = state.add_authorized_payment(preapproval_id=charged["id"])
    flagged = state.add_payment(status="approved")
    flagged_order = state.add_merchant_order(payment_ids=[flagged["id"]])
    claimed = state.add_payment(status="approved")
    claim = state.add_claim(resource_id=claimed["id"])

    sent = {
        "payment": service.send_topic("payment", paid["id"]),
        "topic_merchant_order_wh": service.send_topic("topic_merchant_order_wh", order["id"]),
        "topic_chargebacks_wh": service.send_topic("topic_chargebacks_wh", chargeback["id"]),
        "subscription_preapproval": service.send_topic(
            "subscription_preapproval", subscription["id"]
        ),
        "subscription_authorized_payment": service.send_topic(
            "subscription_authorized_payment", charge["id"]
        ),
        # MercadoPago's documented shape: no data.id; data.payment_id, data.merchant_order.
        "stop_delivery_op_wh": service.send_without_data_id(
            fraud_alert(flagged["id"], flagged_order["id"])
        ),
        "topic_claims_integration_wh": service.send_topic(
            "topic_claims_integration_wh", claim["id"]
        ),
        "point_integration_wh": service.send_topic("point_integration_wh", "123"),
        "simulated": service.send_topic("payment", 990_000_000_123, live_mode=False),
    }
    assert {name: answer.status_code for name, answer in sent.items()} == dict.fromkeys(sent, 200)
    ids = {name: answer.json()["event_id"] for name, answer in sent.items()}
    events = final_events(list(ids.values()), timeout=90)
    statuses = {name: events[event_id].status for name, event_id in ids.items()}
    assert statuses == {
        **dict.fromkeys(ids, EventStatus.SUCCESS),
        "point_integration_wh": EventStatus.IGNORED,
        "simulated": EventStatus.IGNORED,
    }
    assert events[ids["simulated"]].last_error == "MercadoPago test notification"
    assert events[ids["point_integration_wh"]].last_error == (
        "topic 'point_integration_wh' is not handled by this service"
    )
    fraud = db.session.query(MpAlert).filter_by(kind=MpAlert.FRAUD_ALERT).one()
    assert (fraud.mp_payment_id, fraud.merchant_order_id) == (
        str(flagged["id"]),
        str(flagged_order["id"]),
    )

    # The merchant order's payment came in as a payment event of its own.
    from processes import wait_until

    def order_payment_done():
        db.session.expire_all()
        found = (
            db.session.query(WebhookEvent)
            .filter_by(type="payment", resource_id=str(ordered["id"]), source="merchant_order")
            .all()
        )
        return found if found and all(e.status == EventStatus.SUCCESS for e in found) else None

    wait_until(order_payment_done, 60, 0.2, "for the order's payment event")

    # The charge's subscription and payment came in as events of their own.
    def charge_follow_ups_done():
        db.session.expire_all()
        found = (
            db.session.query(WebhookEvent)
            .filter_by(source="authorized_pay")
            .order_by(WebhookEvent.type)
            .all()
        )
        done = len(found) == 2 and all(e.status == EventStatus.SUCCESS for e in found)
        return found if done else None

    follow_ups = wait_until(charge_follow_ups_done, 60, 0.2, "for the charge's events")
    assert [(e.type, e.resource_id) for e in follow_ups] == [
        ("payment", str(charge["payment"]["id"])),
        ("subscription_preapproval", charged["id"]),
    ]
    stored_charge = db.session.query(AuthorizedPayment).one()
    assert stored_charge.subscription_id is not None and stored_charge.status == "processed"
    tags = {c["email"]: set(c["tags"]) for c in sandbox.state.contacts()}
    assert tags[paid["payer"]["email"]] == {"mp-payment-approved"}
    assert tags[ordered["payer"]["email"]] == {"mp-payment-approved"}
    assert "mp-chargeback" in tags[disputed["payer"]["email"]]
    assert tags["sub@example.com"] == {"mp-subscription-authorized"}
    assert tags["member@example.com"] == {"mp-subscription-authorized", "mp-payment-approved"}
    assert "mp-fraud-alert" in tags[flagged["payer"]["email"]]
    assert "mp-claim" in tags[claimed["payer"]["email"]]
