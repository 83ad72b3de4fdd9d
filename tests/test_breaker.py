"""Circuit breakers: open on failures in a row, hold events uncounted, probe, close."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from test_alerts import Receiver

from webhooks_app import breaker
from webhooks_app.extensions import db
from webhooks_app.holds import processing_gate
from webhooks_app.models import EventStatus, ProcessingPause, WebhookAttempt, WebhookEvent
from webhooks_app.pausing import resume
from webhooks_app.queueing import get_redis
from webhooks_app.sandbox.outage import outages
from webhooks_app.services.errors import TransientApiError

from conftest import API_TOKEN, drain, events, make_app, post_webhook, run_worker
from processes import free_port

pytestmark = pytest.mark.timeout(60)

GHL = "gohighlevel"


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def breaker_app(sandbox, receiver, cooldown: float):
    """An app whose GoHighLevel breaker opens after 3 failures and cools down `cooldown` s."""
    small = make_app(
        sandbox,
        BREAKER_THRESHOLD=3,
        BREAKER_AUTH_THRESHOLD=2,
        BREAKER_COOLDOWN=cooldown,
        BREAKER_MAX_COOLDOWN=4 * cooldown,
        ALERT_WEBHOOK_URL=receiver.url,
    )
    with small.app_context():
        yield small
        db.session.remove()
    outages(sandbox.state).start(GHL, 0)


@pytest.fixture
def small(sandbox, app, receiver):
    """A breaker that cools down for 1 s: for the tests that wait for its probe."""
    yield from breaker_app(sandbox, receiver, 1.0)


@pytest.fixture
def patient(sandbox, app, receiver):
    """A breaker that stays open for the whole test (30 s): for the tests that look at it open,
    which a 1 s cool-down turned half-open on a loaded machine."""
    yield from breaker_app(sandbox, receiver, 30.0)


def receive(client, sandbox, count: int) -> list[int]:
    return [
        post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
        for _ in range(count)
    ]


def ghl_state() -> dict:
    return breaker.states_for_display()[GHL]


def test_opens_after_failures_in_a_row_and_holds_events_uncounted(patient, sandbox, receiver):
    small = patient
    outages(sandbox.state).start(GHL, 60, 503)
    client = small.test_client()
    receive(client, sandbox, 5)
    run_worker(small)
    stored = events()
    assert [e.attempts for e in stored] == [1, 1, 1, 0, 0]  # three failures, then it opened
    assert {e.status for e in stored} == {EventStatus.PENDING}
    assert db.session.query(WebhookAttempt).count() == 3
    assert stored[3].next_retry_at is not None  # due when the cool-down ends
    state = ghl_state()
    assert (state["state"], state["openings"], state["needs_operator"]) == ("open", 1, False)
    assert "503" in state["reason"]
    assert len(receiver.received) == 1 and "GoHighLevel is failing" in receiver.received[0]["text"]

    # Metrics: 1 = open, read at scrape time.
    metrics = (
        small.test_client()
        .get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
        .get_data(as_text=True)
    )
    assert 'webhooks_breaker_state{upstream="gohighlevel"} 1.0' in metrics
    assert 'webhooks_breaker_state{upstream="mercadopago"} 0.0' in metrics


def test_a_probe_closes_it_and_everything_finishes(small, sandbox, receiver):
    outages(sandbox.state).start(GHL, 60, 503)
    receive(small.test_client(), sandbox, 5)
    run_worker(small)
    outages(sandbox.state).start(GHL, 0)  # GoHighLevel is back
    drain(small, timeout=30)
    stored = events()
    assert {e.status for e in stored} == {EventStatus.SUCCESS}
    assert max(e.attempts for e in stored) <= 2
    state = ghl_state()
    assert (state["state"], state["openings"], state["closings"]) == ("closed", 1, 1)
    assert len(receiver.received) == 1  # one alert per opening


def test_a_failed_probe_reopens_with_a_doubled_cooldown(small, sandbox):
    outages(sandbox.state).start(GHL, 60, 503)
    receive(small.test_client(), sandbox, 4)
    run_worker(small)
    first = breaker.load([GHL])[GHL]
    time.sleep(first.open_until - time.time() + 0.05)  # half-open now
    assert ghl_state()["state"] == "half_open"
    held = events()[3]
    probe = SimpleNamespace(id=held.id, account_id=1, type="payment")
    assert processing_gate(probe) is None  # the probe
    other = events()[0].id

    def another_worker() -> str | None:
        with small.app_context():
            return processing_gate(SimpleNamespace(id=other, account_id=1, type="payment"))

    with ThreadPoolExecutor(1) as pool:  # the probe is per thread: one attempt holds it
        assert pool.submit(another_worker).result() == "pending"  # it waits
    breaker.record_call(GHL, TransientApiError("503", service=GHL, status_code=503))
    again = breaker.load([GHL])[GHL]
    assert again.cooldown == 2.0 and again.opened_at == first.opened_at
    assert ghl_state()["openings"] == 1  # the same opening


def test_a_404_is_not_an_upstream_failure(small, sandbox):
    for _ in range(5):
        payment = sandbox.state.add_payment()
        sandbox.state.set_fault("mercadopago", str(payment["id"]), status=404, times=1)
        post_webhook(small.test_client(), payment["id"])
    run_worker(small)
    assert [e.attempts for e in events()] == [1] * 5  # all tried, all retried later
    assert breaker.states_for_display()["mercadopago"]["state"] == "closed"
    assert breaker.states_for_display()["mercadopago"]["recent_failures"] == 0


def test_a_401_opens_it_until_an_operator_resumes(small, sandbox, receiver):
    sandbox.state.ghl_token = "the-right-token"  # ours is now wrong: 401
    try:
        receive(small.test_client(), sandbox, 5)
        run_worker(small)
        stored = events()
        assert [e.status for e in stored[:2]] == [EventStatus.FAILED] * 2  # not retryable
        assert [(e.status, e.attempts) for e in stored[2:]] == [(EventStatus.PENDING, 0)] * 3
        state = ghl_state()
        assert (state["state"], state["needs_operator"], state["open_until"]) == (
            "open",
            True,
            None,
        )
        pause_row = db.session.get(ProcessingPause, GHL)
        assert pause_row.paused_by == "circuit-breaker" and "GHL_API_TOKEN" in pause_row.reason
        assert "until an operator acts" in receiver.received[0]["text"]
        time.sleep(1.2)  # longer than the cool-down: still held
        drain(small, timeout=3, until=lambda: True)
        assert [e.attempts for e in events()[2:]] == [0, 0, 0]
    finally:
        sandbox.state.ghl_token = None
    report = resume(GHL, "ops")
    assert report.resumed == [GHL] and report.breakers_reset == [GHL] and report.enqueued == 3
    drain(small, timeout=20, until=lambda: all(e.status != "pending" for e in events()))
    assert [e.status for e in events()[2:]] == [EventStatus.SUCCESS] * 3
    assert ghl_state()["state"] == "closed"


def test_the_state_is_shared_by_two_app_instances_through_redis(patient, sandbox):
    small = patient  # a cool-down far longer than the test: building the second app takes time
    outages(sandbox.state).start(GHL, 60, 503)
    receive(small.test_client(), sandbox, 3)
    run_worker(small)  # opened by this "worker"
    other = make_app(sandbox, BREAKER_THRESHOLD=3, BREAKER_COOLDOWN=60.0)
    with other.app_context():
        assert breaker.states_for_display()[GHL]["state"] == "open"
        (event_id,) = receive(other.test_client(), sandbox, 1)
        run_worker(other)  # another "worker": holds the event
        assert db.session.get(WebhookEvent, event_id).attempts == 0


def test_redis_down_fails_closed(sandbox, app):
    down = make_app(sandbox, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with down.app_context():
        breaker.record_call(GHL, TransientApiError("503", service=GHL, status_code=503))
        event = SimpleNamespace(id=1, account_id=1, type="payment")
        assert processing_gate(event) is None  # attempts run as if there were no breaker
        assert breaker.states_for_display()[GHL]["state"] == "unknown"


def test_failures_must_come_in_a_row(small, sandbox):
    error = TransientApiError("503", service=GHL, status_code=503)
    for _ in range(2):
        breaker.record_call(GHL, error)
        breaker.record_call(GHL, error)
        breaker.record_call(GHL, None)  # a success ends the run
    assert get_redis(small).get("webhooks:breaker:gohighlevel") is None
    for _ in range(3):
        breaker.record_call(GHL, error)
    assert ghl_state()["state"] == "open"
