"""End to end with real processes: gunicorn, worker.py and scheduler.py."""

from __future__ import annotations

import pytest
import requests

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent

from conftest import notification
from processes import Processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def service(app, sandbox, tmp_path):
    """The service as deployed: gunicorn (Procfile settings), a worker and the scheduler."""
    processes = Processes(tmp_path, sandbox.url)
    try:
        processes.start_web()
        processes.start_worker()
        processes.start_scheduler()
        yield processes
    finally:
        processes.stop_all()


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
