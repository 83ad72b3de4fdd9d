"""subscription_preapproval: the sandbox's preapproval, the `subscriptions` row, the tags."""

from __future__ import annotations

import pytest
import requests

from webhooks_app.extensions import db
from webhooks_app.handlers.subscription import store_subscription
from webhooks_app.models import EventStatus, Subscription, WebhookEvent

from conftest import drain, post_topic


def post_subscription(client, preapproval_id: str, event_type: str = "subscription_preapproval"):
    """A signed, live Webhooks-form notification of a subscription, as MercadoPago sends it."""
    answer = post_topic(client, event_type, preapproval_id)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def subscription(mp_id: str) -> Subscription:
    db.session.expire_all()
    return db.session.query(Subscription).filter_by(mp_preapproval_id=mp_id).one()


def test_sandbox_serves_preapprovals_with_mercadopago_shape_and_errors(sandbox):
    created = requests.post(
        f"{sandbox.url}/_sandbox/preapprovals",
        json={"payer_email": "sub@example.com", "preapproval_plan_id": "plan-1"},
        timeout=5,
    ).json()
    assert len(created["id"]) == 32 and created["status"] == "authorized"
    headers = {"Authorization": "Bearer TEST-token"}
    url = f"{sandbox.url}/preapproval/{created['id']}"
    read = requests.get(url, headers=headers, timeout=5).json()
    assert read["auto_recurring"]["frequency_type"] == "months"
    assert {"payer_email", "reason", "next_payment_date", "last_modified"} <= set(read)
    missing = requests.get(f"{sandbox.url}/preapproval/nope", headers=headers, timeout=5)
    assert missing.status_code == 404
    assert set(missing.json()) == {"message", "error", "status", "cause"}
    sandbox.state.set_fault("mercadopago", created["id"], status=429, times=1)
    assert requests.get(url, headers=headers, timeout=5).status_code == 429
    assert requests.get(url, timeout=5).status_code == 401


def test_status_tags_are_replaced_authorized_paused_cancelled(app, client, sandbox):
    preapproval = sandbox.state.add_preapproval(
        payer_email="subscriber@example.com",
        preapproval_plan_id="2c9380848a",
        reason="Gold plan",
        auto_recurring={"transaction_amount": 99.5, "currency_id": "ARS", "frequency": 1},
    )
    mp_id = preapproval["id"]
    # The first read fails once: the retry still ends with the right tags.
    sandbox.state.set_fault("mercadopago", mp_id, status=502, times=1)
    post_subscription(client, mp_id)
    drain(app)
    row = subscription(mp_id)
    assert (row.status, row.payer_email, row.reason) == (
        "authorized",
        "subscriber@example.com",
        "Gold plan",
    )
    assert str(row.amount) == "99.50" and row.currency == "ARS" and row.frequency == 1
    assert row.preapproval_plan_id == "2c9380848a" and row.next_payment_date is not None
    contact = sandbox.state.find_contact("subscriber@example.com")
    assert contact["tags"] == ["mp-subscription-authorized"]

    for status in ("paused", "cancelled"):
        sandbox.state.add_preapproval(id=mp_id, status=status)
        post_subscription(client, mp_id)
        drain(app)

    row = subscription(mp_id)
    assert row.status == "cancelled" and row.tags_applied == ["mp-subscription-cancelled"]
    contact = sandbox.state.find_contact("subscriber@example.com")
    assert contact["tags"] == ["mp-subscription-cancelled"]
    assert row.ghl_contact_id == contact["id"]
    events = db.session.query(WebhookEvent).filter_by(type="subscription_preapproval").all()
    assert [e.status for e in events] == [EventStatus.SUCCESS] * 3

    # A redelivery of the last state changes nothing (idempotent).
    post_subscription(client, mp_id)
    drain(app)
    assert sandbox.state.find_contact("subscriber@example.com")["tags"] == [
        "mp-subscription-cancelled"
    ]


@pytest.mark.parametrize("topic", ["point_integration_wh", "delivery", "mp-connect"])
def test_unknown_topics_are_ignored(app, client, topic):
    post_subscription(client, "12345", event_type=topic)
    drain(app)
    event = db.session.query(WebhookEvent).one()
    assert event.status == EventStatus.IGNORED


def test_simulate_each_new_topic_creates_its_resource_and_notifies(app, sandbox, runner):
    import threading

    from werkzeug.serving import make_server

    from webhooks_app.models import MpAlert

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
    topics = ("subscription_preapproval", "stop_delivery_op_wh", "topic_claims_integration_wh")
    try:
        results = [
            runner.invoke(
                args=["webhooks", "simulate", "--url", url, "--count", "1", "--type", topic]
            )
            for topic in topics
        ]
    finally:
        server.shutdown()
    assert [r.exit_code for r in results] == [0, 0, 0], [r.output for r in results]
    drain(app)
    events = db.session.query(WebhookEvent).all()
    assert sorted(e.type for e in events) == sorted(topics)
    assert {e.status for e in events} == {EventStatus.SUCCESS}
    assert db.session.query(Subscription).count() == 1
    assert sorted(a.kind for a in db.session.query(MpAlert)) == ["claim", "fraud_alert"]


def test_api_and_cli_show_subscriptions(app, client, sandbox, runner):
    from conftest import api_headers

    preapproval = sandbox.state.add_preapproval(payer_email="list@example.com", reason="Silver")
    post_subscription(client, preapproval["id"])
    drain(app)
    listed = client.get("/api/subscriptions?status=authorized", headers=api_headers()).get_json()
    assert [s["mp_preapproval_id"] for s in listed["subscriptions"]] == [preapproval["id"]]
    assert listed["subscriptions"][0]["tags_applied"] == ["mp-subscription-authorized"]
    one = client.get(f"/api/subscriptions/{preapproval['id']}", headers=api_headers())
    assert one.status_code == 200 and one.get_json()["reason"] == "Silver"
    assert client.get("/api/subscriptions/nope", headers=api_headers()).status_code == 404
    assert (
        client.get("/api/subscriptions?status=paused", headers=api_headers()).get_json()[
            "subscriptions"
        ]
        == []
    )
    result = runner.invoke(args=["webhooks", "subscriptions"])
    assert result.exit_code == 0 and preapproval["id"] in result.output
    assert "list@example.com" in result.output and "1 subscription(s)" in result.output


def test_an_older_read_never_overwrites_a_newer_subscription(app):
    """The upsert keeps the newer row whoever writes second; an equal or newer read wins."""
    newer = {"id": "sub-1", "status": "paused", "last_modified": "2026-12-05T10:00:00.000Z"}
    older = {"id": "sub-1", "status": "authorized", "last_modified": "2026-12-04T10:00:00.000Z"}
    assert store_subscription(newer).status == "paused"
    assert store_subscription(older).status == "paused"
    later = {**newer, "status": "cancelled", "last_modified": "2026-12-06T10:00:00.000Z"}
    assert store_subscription(later).status == "cancelled"
    assert db.session.query(Subscription).count() == 1
