"""End to end with real processes: gunicorn, worker.py and scheduler.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import notification

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.signatures import sign

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def service(app, sandbox, tmp_path) -> Iterator[str]:
    """The service as deployed: gunicorn (Procfile settings), a worker and the scheduler."""
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "MP_API_BASE_URL": sandbox.url,
        "GHL_API_BASE_URL": sandbox.url,
        "SCHEDULER_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    bin_dir = Path(sys.executable).parent
    commands = {
        "web": [
            str(bin_dir / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "30",
        ],
        "worker": [sys.executable, "worker.py"],
        "scheduler": [sys.executable, "scheduler.py"],
    }
    processes = []
    try:
        for name, command in commands.items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not start: " + (tmp_path / "web.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        for process in processes:
            stop(process)
        for name in commands:
            print(f"--- {name} log ---\n" + (tmp_path / f"{name}.log").read_text()[-3000:])


def send(url: str, payment_id: int) -> requests.Response:
    request_id = str(uuid.uuid4())
    return requests.post(
        f"{url}/webhooks/mp",
        params={"data.id": str(payment_id), "type": "payment"},
        json=notification(payment_id),
        headers={
            "x-request-id": request_id,
            "x-signature": sign("test-webhook-secret", str(payment_id), request_id),
        },
        timeout=10,
    )


def wait_for_final(ids: list[int], timeout: float = 60.0) -> dict[int, WebhookEvent]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        events = {e.id: e for e in db.session.query(WebhookEvent).filter(WebhookEvent.id.in_(ids))}
        if all(e.status in EventStatus.FINAL for e in events.values()):
            return events
        time.sleep(0.2)
    raise AssertionError({e.id: e.status for e in events.values()})


def test_signed_notifications_travel_through_the_whole_system(service, sandbox):
    healthy = sandbox.state.add_payment(status="approved")
    flaky = sandbox.state.add_payment(status="rejected")
    sandbox.state.set_fault("mercadopago", str(flaky["id"]), status=502, times=1)

    answers = [send(service, healthy["id"]), send(service, flaky["id"])]
    ipn = requests.post(
        f"{service}/webhooks/mp",
        params={"topic": "payment", "id": healthy["id"]},
        headers={"x-request-id": "ipn-1"},
        timeout=10,
    )
    unsigned = requests.post(
        f"{service}/webhooks/mp?data.id=1&type=payment", json=notification(1), timeout=10
    )
    assert [a.status_code for a in answers] == [200, 200] and ipn.status_code == 200
    assert unsigned.status_code == 401

    ids = [a.json()["event_id"] for a in answers] + [ipn.json()["event_id"]]
    events = wait_for_final(ids)
    assert [events[i].status for i in ids] == [EventStatus.SUCCESS] * 3
    assert [events[i].attempts for i in ids] == [
        1,
        2,
        1,
    ]  # the flaky one was retried by the scheduler
    retry_gap = (
        events[ids[1]].attempt_log[1].started_at - events[ids[1]].attempt_log[0].finished_at
    ).total_seconds()
    assert 1.0 <= retry_gap < 4.0  # RETRY_DELAYS[0] is 1 s in testing
    tags = {c["email"]: c["tags"] for c in sandbox.state.contacts()}
    assert tags == {
        healthy["payer"]["email"]: ["mp-payment-approved"],
        flaky["payer"]["email"]: ["mp-payment-rejected"],
    }
