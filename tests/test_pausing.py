"""Pause and resume: events wait pending with no attempt spent, then drain in received order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from webhooks_app.catchup import catch_up
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, ProcessingPause, WebhookAttempt
from webhooks_app.pausing import pause, resume
from webhooks_app.queueing import get_redis
from webhooks_app.reconciler import reconcile
from webhooks_app.timeutil import utcnow

from conftest import api_headers, events, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


def receive(client, sandbox, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        payment = sandbox.state.add_payment()
        response = post_webhook(client, payment["id"])
        assert response.status_code == 200
        ids.append(response.json["event_id"])
    return ids


def attempt_rows() -> int:
    return db.session.query(WebhookAttempt).count()


def test_paused_events_wait_with_no_attempt_then_drain_in_received_order(app, client, sandbox):
    assert pause("all", "GHL maintenance", "test") is True
    ids = receive(client, sandbox, 5)  # received, stored, answered 200
    run_worker(app)  # their jobs run: they find the pause and leave
    assert [(e.status, e.attempts) for e in events()] == [(EventStatus.PENDING, 0)] * 5
    assert attempt_rows() == 0
    assert sandbox.state.calls() == []
    # The reconciler does not re-enqueue them, however overdue they are.
    assert reconcile(now=utcnow() + timedelta(hours=1)).requeued == []

    report = resume("all", "test")
    assert (report.resumed, report.enqueued) == (["all"], 5)
    run_worker(app)
    stored = events()
    assert [(e.status, e.attempts) for e in stored] == [(EventStatus.SUCCESS, 1)] * 5
    started = [e.attempt_log[0].started_at for e in stored]
    assert started == sorted(started) and [e.id for e in stored] == ids  # received order
    mp_reads = [c["path"] for c in sandbox.state.calls(api="mercadopago")]
    assert mp_reads == [f"/v1/payments/{e.resource_id}" for e in stored]


def test_a_pause_survives_a_redis_flush(app, client, sandbox):
    pause("all", "flush test", "test")
    receive(client, sandbox, 2)
    get_redis(app).flushdb()  # every job gone; the pause is in the database
    other = make_app(sandbox)  # another process's view: from the database
    with other.app_context():
        assert reconcile(now=utcnow() + timedelta(hours=1)).requeued == []
        run_worker(other)
    assert {e.status for e in events()} == {EventStatus.PENDING}
    assert resume(None, "test").enqueued == 2
    run_worker(app)
    assert {e.status for e in events()} == {EventStatus.SUCCESS}


def test_a_gohighlevel_pause_holds_payments_but_not_ignored_events(app, client, sandbox):
    pause("gohighlevel", "token rotation", "test")
    (payment_event,) = receive(client, sandbox, 1)
    ignored = client.post("/webhooks/mp?topic=point_integration_wh&id=31").json["event_id"]
    run_worker(app)
    by_id = {e.id: e for e in events()}
    assert (by_id[payment_event].status, by_id[payment_event].attempts) == ("pending", 0)
    assert by_id[ignored].status == EventStatus.IGNORED
    assert sandbox.state.calls() == []  # a payment would read MercadoPago first: none started

    # Resuming another stage releases nothing; resuming this one drains it.
    assert resume("mercadopago", "test").enqueued == 0
    assert resume("gohighlevel", "test").enqueued == 1
    run_worker(app)
    assert events()[0].status == EventStatus.SUCCESS


def test_a_mercadopago_pause_holds_catch_up(app, sandbox):
    sandbox.state.add_payment()
    pause("mercadopago", "MercadoPago incident", "test")
    report = catch_up()
    assert "paused" in report.skipped_reason and report.created == []
    assert sandbox.state.calls(api="mercadopago") == []
    resume("mercadopago", "test")
    assert len(catch_up().created) == 1


def test_pausing_twice_keeps_the_first_and_the_history_has_both_actions(app):
    assert pause("gohighlevel", "first", "alice") is True
    assert pause("gohighlevel", "second", "bob") is False
    row = db.session.get(ProcessingPause, "gohighlevel")
    assert (row.paused_by, row.reason) == ("alice", "first")
    resume("gohighlevel", "carol")
    assert db.session.get(ProcessingPause, "gohighlevel") is None


def test_api_pause_status_resume(client, sandbox):
    headers = api_headers()
    paused = client.post(
        "/api/processing/pause",
        json={"stage": "gohighlevel", "reason": "GHL down"},
        headers=headers,
    )
    assert paused.status_code == 200 and paused.json["changed"] is True
    state = client.get("/api/processing", headers=headers).json
    assert state["paused"] is True
    assert state["stages"]["gohighlevel"]["reason"] == "GHL down"
    assert state["stages"]["gohighlevel"]["paused_by"] == "api (token)"
    assert state["stages"]["all"] == {"paused": False}
    assert state["breakers"]["gohighlevel"]["state"] == "closed"
    resumed = client.post("/api/processing/resume", json={"stage": "gohighlevel"}, headers=headers)
    assert resumed.json["resumed"] == ["gohighlevel"] and resumed.json["paused"] is False
    history = client.get("/api/processing", headers=headers).json["history"]
    assert [(h["action"], h["stage"]) for h in history] == [
        ("resume", "gohighlevel"),
        ("pause", "gohighlevel"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"stage": "ghl", "reason": "x"},
        {"stage": "all"},
        {"stage": "all", "reason": "   "},
        {"stage": "all", "reason": "x" * 501},
        {"stage": 3, "reason": "x"},
    ],
)
def test_api_pause_refuses_bad_input(client, body):
    response = client.post("/api/processing/pause", json=body, headers=api_headers())
    assert response.status_code == 400 and response.json["error"]


def test_cli_pause_status_resume(app, runner):
    result = runner.invoke(args=["webhooks", "pause", "--reason", "deploy", "--by", "ops"])
    assert result.exit_code == 0, result.output
    assert "all          PAUSED by cli (ops)" in result.output
    status = runner.invoke(args=["webhooks", "status"])
    assert "deploy" in status.output and "breaker gohighlevel" in status.output
    assert "pause  all by cli (ops): deploy" in status.output
    result = runner.invoke(args=["webhooks", "resume", "--by", "ops"])
    assert "resumed: all" in result.output and "enqueued 0" in result.output
    refused = runner.invoke(args=["webhooks", "pause", "--stage", "ghl", "--reason", "x"])
    assert refused.exit_code == 2


def admin_client(sandbox):
    admin = make_app(sandbox, ADMIN_USERNAME="admin", ADMIN_PASSWORD="secret")
    return admin, admin.test_client()


def csrf_token(client, auth) -> str:
    page = client.get("/admin/processing", auth=auth).get_data(as_text=True)
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_admin_banner_on_every_page_escaped_with_a_resume_button(app, sandbox):
    admin, client = admin_client(sandbox)
    auth = ("admin", "secret")
    with admin.app_context():
        token = csrf_token(client, auth)
        refused = client.post(
            "/admin/processing/pause", data={"stage": "all", "reason": "x"}, auth=auth
        )
        assert refused.status_code == 400  # no CSRF token
        done = client.post(
            "/admin/processing/pause",
            data={"stage": "all", "reason": "<script>alert(1)</script>", "csrf_token": token},
            auth=auth,
        )
        assert done.status_code == 302
        for page in ("/admin/events", "/admin/stats", "/admin/payments", "/admin/processing"):
            html = client.get(page, auth=auth).get_data(as_text=True)
            assert "Processing paused" in html and "by admin (admin)" in html, page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
            assert 'action="/admin/processing/resume"' in html
        client.post(
            "/admin/processing/resume", data={"stage": "all", "csrf_token": token}, auth=auth
        )
        assert "Processing paused" not in client.get("/admin/events", auth=auth).get_data(
            as_text=True
        )
        assert db.session.query(ProcessingPause).count() == 0
