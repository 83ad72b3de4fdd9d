"""`flask webhooks …` commands."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_queue

from conftest import drain, post_webhook

pytestmark = pytest.mark.timeout(60)


def statuses() -> dict[int, str]:
    db.session.expire_all()
    return {e.id: e.status for e in db.session.query(WebhookEvent)}


def test_process_handles_due_pending_events_without_a_worker(app, client, sandbox, runner):
    ids = [
        post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"] for _ in range(3)
    ]
    get_queue(app).empty()  # as if Redis had lost the jobs
    result = runner.invoke(args=["webhooks", "process"])
    assert result.exit_code == 0, result.output
    assert "processed 3 due event(s)" in result.output
    assert statuses() == dict.fromkeys(ids, EventStatus.SUCCESS)


def test_replay_by_id_and_by_status(app, client, sandbox, runner):
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=-1)
    failed = [post_webhook(client, payment["id"]).json["event_id"] for _ in range(2)]
    drain(app)
    assert set(statuses().values()) == {EventStatus.FAILED}
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=0)

    one = runner.invoke(args=["webhooks", "replay", str(failed[0])])
    assert one.exit_code == 0, one.output
    assert f"event {failed[0]}: re-queued" in one.output
    assert statuses()[failed[1]] == EventStatus.FAILED

    rest = runner.invoke(args=["webhooks", "replay", "--status", "failed"])
    assert rest.exit_code == 0 and "replayed 1 event(s)" in rest.output
    drain(app)
    assert set(statuses().values()) == {EventStatus.SUCCESS}

    refused = runner.invoke(args=["webhooks", "replay", str(failed[0]), "999999"])
    assert refused.exit_code == 1
    assert "already succeeded" in refused.output and "999999 does not exist" in refused.output


def test_replay_needs_ids_or_status(runner):
    assert runner.invoke(args=["webhooks", "replay"]).exit_code == 2


def test_stats(app, client, sandbox, runner):
    post_webhook(client, sandbox.state.add_payment()["id"])
    client.post("/webhooks/mp?topic=merchant_order&id=5")
    post_webhook(client, 404404)
    drain(app, until=lambda: True)
    result = runner.invoke(args=["webhooks", "stats", "--json"])
    data = json.loads(result.output)
    assert data["events"]["success"] == 1 and data["events"]["ignored"] == 1
    assert data["total_events"] == 3 and data["payments"] == 1
    text = runner.invoke(args=["webhooks", "stats"]).output
    assert "success" in text and "total       3" in text


def test_simulate_sends_signed_notifications_to_a_running_instance(app, sandbox, runner):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
        result = runner.invoke(args=["webhooks", "simulate", "--url", url, "--count", "2"])
        ipn = runner.invoke(args=["webhooks", "simulate", "--url", url, "--count", "1", "--ipn"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert result.output.count("HTTP 200") == 2 and ipn.exit_code == 0
    drain(app)
    assert list(statuses().values()) == [EventStatus.SUCCESS] * 3
    assert len(sandbox.state.contacts()) == 3
