"""`flask webhooks …` commands."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from factories import add_event
from werkzeug.serving import make_server

from webhooks_app.extensions import db
from webhooks_app.handlers import TEST_NOTIFICATION
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_queue, job_id
from webhooks_app.timeutil import utcnow

from conftest import dead_letter, drain, events, post_webhook, statuses

pytestmark = pytest.mark.timeout(60)


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
    client.post("/webhooks/mp?topic=point_integration_wh&id=5")
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


def test_simulate_test_sends_a_test_notification_that_is_ignored(app, sandbox, runner):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp"
        result = runner.invoke(args=["webhooks", "simulate", "--url", url, "--test"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert result.output.count("HTTP 200") == 1
    drain(app)
    (stored,) = db.session.query(WebhookEvent).all()
    assert stored.payload["live_mode"] is False and not sandbox.state.payments()
    assert (stored.status, stored.last_error) == (EventStatus.IGNORED, TEST_NOTIFICATION)


def test_list_filters_and_pages(app, runner):
    old = add_event(status=EventStatus.FAILED, received_at=utcnow() - timedelta(days=2))
    new = [add_event(status=EventStatus.FAILED) for _ in range(3)]
    ok = add_event(status=EventStatus.SUCCESS, resource_id="31337")

    result = runner.invoke(args=["webhooks", "list", "--status", "failed", "--since", "1d"])
    assert result.exit_code == 0, result.output
    listed = [
        int(line.split()[0])
        for line in result.output.splitlines()[1:]
        if line[:8].strip().isdigit()
    ]
    assert listed == [event.id for event in reversed(new)]
    assert "3 shown of 3 matching event(s) (status=failed since=1d)" in result.output

    first = json.loads(runner.invoke(args=["webhooks", "list", "--limit", "2", "--json"]).output)
    assert len(first["events"]) == 2 and first["total"] == 5 and first["next_cursor"]
    rest = runner.invoke(
        args=["webhooks", "list", "--json", "--limit", "10", "--cursor", first["next_cursor"]]
    )
    ids = [e["id"] for e in first["events"] + json.loads(rest.output)["events"]]
    assert sorted(ids) == sorted([old.id, ok.id, *(e.id for e in new)])

    found = runner.invoke(args=["webhooks", "list", "-q", "31337"])
    assert f"{ok.id:>8}" in found.output and "1 shown of 1" in found.output


@pytest.mark.parametrize(
    "args",
    [
        ["--status", "broken"],
        ["--since", "last week"],
        ["--cursor", "nonsense"],
        ["--limit", "0"],
    ],
)
def test_list_refuses_bad_values(runner, args):
    result = runner.invoke(args=["webhooks", "list", *args])
    assert result.exit_code == 2 and "Error" in result.output


def test_show(app, client, sandbox, runner):
    payment = sandbox.state.add_payment(payer={"email": "lia@shop.test"})
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=1)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    drain(app)

    result = runner.invoke(args=["webhooks", "show", str(event_id)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "status:      success" in text and "lia@shop.test" in text
    assert "#1" in text and "retry" in text and "500" in text and "#2" in text
    assert f'"id": "{payment["id"]}"' in text  # the payload
    assert job_id(event_id, 2) in text and "finished" in text

    data = json.loads(runner.invoke(args=["webhooks", "show", str(event_id), "--json"]).output)
    assert data["id"] == event_id and len(data["attempt_log"]) == 2
    assert "Traceback" in data["attempt_log"][0]["traceback"]

    missing = runner.invoke(args=["webhooks", "show", "999999"])
    assert missing.exit_code == 1 and "event 999999 does not exist" in missing.output


def test_replay_by_filter_with_dry_run(app, client, sandbox, runner):
    recent = dead_letter(app, client, sandbox, 2)
    old = add_event(status=EventStatus.FAILED, received_at=utcnow() - timedelta(days=3)).id
    other_type = add_event(status=EventStatus.FAILED, type="merchant_order").id

    args = ["webhooks", "replay", "--status", "failed", "--since", "1d", "--type", "payment"]
    dry = runner.invoke(args=[*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: 2 event(s) would be replayed" in dry.output
    assert set(statuses().values()) == {EventStatus.FAILED} and get_queue(app).count == 0

    result = runner.invoke(args=args)
    assert result.exit_code == 0 and "replayed 2 event(s)" in result.output
    assert sorted(get_queue(app).job_ids) == sorted(job_id(event_id, 2) for event_id in recent)
    drain(app)
    assert statuses() == {
        **dict.fromkeys(recent, EventStatus.SUCCESS),
        old: EventStatus.FAILED,
        other_type: EventStatus.FAILED,
    }


def test_replay_of_an_id_no_event_can_have(runner):
    result = runner.invoke(args=["webhooks", "replay", str(2**70)])
    assert result.exit_code == 1 and f"event {2**70} does not exist" in result.output


def test_replay_refuses_ids_with_filters_and_bad_filters(runner):
    assert runner.invoke(args=["webhooks", "replay", "1", "--status", "failed"]).exit_code == 2
    bad = runner.invoke(args=["webhooks", "replay", "--status", "failed", "--since", "soon"])
    assert bad.exit_code == 2 and "since: must be" in bad.output


def test_retry_failed(app, client, sandbox, runner):
    failed = dead_letter(app, client, sandbox, 3)
    pending = add_event(status=EventStatus.PENDING).id

    dry = runner.invoke(args=["webhooks", "retry-failed", "--dry-run"])
    assert dry.exit_code == 0 and "dry run: 3 event(s) would be replayed" in dry.output
    assert get_queue(app).count == 0

    result = runner.invoke(args=["webhooks", "retry-failed"])
    assert result.exit_code == 0 and "replayed 3 event(s)" in result.output
    for event_id in failed:
        assert f"event {event_id}: re-queued" in result.output
    assert get_queue(app).count == 3  # the pending event was not touched
    drain(app, until=lambda: all(statuses()[i] == EventStatus.SUCCESS for i in failed))
    assert statuses()[pending] == EventStatus.PENDING

    assert runner.invoke(args=["webhooks", "retry-failed", "--status", "success"]).exit_code == 2
    nothing = runner.invoke(args=["webhooks", "retry-failed"])
    assert nothing.exit_code == 0 and "replayed 0 event(s)" in nothing.output


def test_stats_shows_latency_queue_and_oldest_pending(app, runner):
    add_event(status=EventStatus.SUCCESS, latency=1.5)
    add_event(status=EventStatus.PENDING, received_at=utcnow() - timedelta(minutes=5))
    text = runner.invoke(args=["webhooks", "stats", "--hours", "2"]).output
    assert "received    2 in the last 2 h" in text
    assert "latency     p50 1.500s" in text and "(1 success(es) in the window)" in text
    assert "queue       0 (0 queued, 0 scheduled, 0 running)" in text
    assert "oldest      pending for 30" in text
    data = json.loads(runner.invoke(args=["webhooks", "stats", "--json"]).output)
    assert data["latency"]["p50"] == 1.5 and data["queue"]["total"] == 0
    assert runner.invoke(args=["webhooks", "stats", "--hours", "0"]).exit_code == 2


def test_simulate_for_an_account_signs_with_its_secret_and_reaches_its_location(
    app, sandbox, runner
):
    from accounts_support import create_account

    shop = create_account("shop-b")
    # The sandbox plays shop-b's seller and location: what simulate creates is theirs.
    sandbox.state.register_mp_token(shop.mp_token)
    sandbox.state.register_ghl_token(shop.ghl_token, shop.location)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhooks/mp/shop-b"
        args = ["webhooks", "simulate", "--account", "shop-b", "--url", url, "--count", "2"]
        result = runner.invoke(args=args)
        unknown = runner.invoke(args=["webhooks", "simulate", "--account", "nobody"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert result.output.count("HTTP 200") == 2
    assert unknown.exit_code == 2 and "nobody" in unknown.output
    drain(app)
    stored = events()
    assert [(e.account_id, e.status) for e in stored] == [(shop.id, EventStatus.SUCCESS)] * 2
    assert {contact["locationId"] for contact in sandbox.state.contacts()} == {shop.location}
    owners = {sandbox.state.owner_of("payment", e.resource_id) for e in stored}
    assert owners == {shop.mp_token}
