"""Alerts to a local Slack-style receiver and a local SMTP server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from factories import add_event

from webhooks_app.alerts import check_and_alert
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.timeutil import utcnow

from conftest import make_app, post_webhook, run_worker
from processes import ROOT, free_port

pytestmark = pytest.mark.timeout(60)


class Receiver:
    """A local HTTP endpoint that records each JSON POST (or answers `status`)."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Mailbox:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def __init__(self) -> None:
        self.messages: list[str] = []


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def mailbox():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.port = controller.port
    yield mailbox
    controller.stop()


def alerting_app(sandbox, receiver, mailbox, **overrides):
    return make_app(
        sandbox,
        ALERT_WEBHOOK_URL=receiver.url,
        ALERT_EMAIL_TO="ops@example.com",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=mailbox.port,
        SMTP_STARTTLS=False,
        **overrides,
    )


def test_a_storm_of_dead_letters_sends_one_summary(app, client, sandbox, receiver, mailbox):
    alerting = alerting_app(sandbox, receiver, mailbox)
    for _ in range(20):
        post_webhook(client, 404404)  # never exists
    db.session.query(WebhookEvent).update(
        {
            "status": EventStatus.FAILED,
            "processed_at": utcnow(),
            "attempts": 4,
            "last_error": "NotFoundError: 404",
        }
    )
    db.session.commit()
    with alerting.app_context():
        report = check_and_alert(now=utcnow() + timedelta(seconds=1))
        again = check_and_alert(now=utcnow() + timedelta(seconds=2))
    assert report.sent == 2 and again.messages == []  # nothing new: nothing sent
    (message,) = receiver.received
    assert (
        message["text"].count("\n- event") == 5
        and "20 webhook event(s) dead-lettered" in message["text"]
    )
    assert "and 15 more" in message["text"]
    (mail,) = mailbox.messages
    assert "To: ops@example.com" in mail and "20 webhook event(s) dead-lettered" in mail


def test_old_backlog_is_reported_once(app, client, sandbox, receiver, mailbox):
    alerting = alerting_app(sandbox, receiver, mailbox, ALERT_PENDING_AGE=60)
    post_webhook(client, sandbox.state.add_payment()["id"])
    with alerting.app_context():
        assert check_and_alert().messages == []  # young backlog
        later = utcnow() + timedelta(minutes=5)
        assert "oldest pending" in check_and_alert(now=later).messages[0]
        assert check_and_alert(now=later + timedelta(minutes=1)).messages == []  # said already
    assert len(receiver.received) == 1


def test_a_failing_alert_never_affects_processing(app, client, sandbox, mailbox):
    broken = Receiver(status=500)
    try:
        alerting = make_app(
            sandbox,
            ALERT_WEBHOOK_URL=broken.url,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=1,
            ALERT_EMAIL_TO="ops@example.com",
            SMTP_STARTTLS=False,
        )
        event_id = post_webhook(client, 404404).json["event_id"]
        with alerting.app_context():
            run_worker(alerting)
            db.session.query(WebhookEvent).update(
                {"status": EventStatus.FAILED, "processed_at": utcnow()}
            )
            db.session.commit()
            report = check_and_alert(now=utcnow() + timedelta(seconds=1))
        assert report.sent == 0 and len(report.errors) == 2
        assert len(broken.received) == 1
        ok = post_webhook(client, sandbox.state.add_payment()["id"])
        run_worker(app)
        assert db.session.get(WebhookEvent, ok.json["event_id"]).status == EventStatus.SUCCESS
        assert event_id
    finally:
        broken.close()


def test_no_channel_no_alert(app):
    assert check_and_alert().messages == []


# A Slack incoming-webhook URL is its own credential: the path after /services/ is the key.
SECRET_PATH = "/services/T0AAAAAAA/B0BBBBBBB/s3cretSlackKeyXYZ"
SECRET_PARTS = ("s3cretSlackKeyXYZ", "B0BBBBBBB", "T0AAAAAAA", "tok3nQUERYvalue")


def alert_url(kind: str, broken: Receiver) -> str:
    return {
        "http-500": f"http://127.0.0.1:{broken.server.server_port}{SECRET_PATH}",
        "query": f"http://127.0.0.1:{broken.server.server_port}/hook?token=tok3nQUERYvalue",
        "unreachable": f"http://127.0.0.1:{free_port()}{SECRET_PATH}",
        "no-scheme": f"hooks.example.com{SECRET_PATH}",
    }[kind]


def one_dead_letter() -> None:
    add_event(status=EventStatus.FAILED, processed_at=utcnow(), last_error="NotFoundError: 404")


@pytest.mark.parametrize("kind", ["http-500", "query", "unreachable", "no-scheme"])
def test_a_failing_alert_never_logs_or_reports_the_webhook_url(app, sandbox, caplog, kind):
    broken = Receiver(status=500)
    try:
        alerting = make_app(sandbox, ALERT_WEBHOOK_URL=alert_url(kind, broken))
        one_dead_letter()
        with caplog.at_level(logging.DEBUG, logger="webhooks_app"), alerting.app_context():
            report = check_and_alert(now=utcnow() + timedelta(seconds=1))
    finally:
        broken.close()
    assert report.sent == 0 and len(report.errors) == 1
    assert "alert by webhook not sent" in caplog.text
    for secret in SECRET_PARTS:
        assert secret not in caplog.text and secret not in report.errors[0], (secret, kind)


def test_the_json_log_file_never_holds_the_webhook_url(app, tmp_path):
    """The log file is attached once per process: a process of its own writes it."""
    broken = Receiver(status=500)
    log_file = tmp_path / "webhook.log"
    script = (
        "import sys\n"
        "from datetime import timedelta\n"
        "from webhooks_app import create_app\n"
        "from webhooks_app.alerts import check_and_alert\n"
        "from webhooks_app.config import TestingConfig\n"
        "from webhooks_app.timeutil import utcnow\n"
        "app = create_app(TestingConfig, {'LOG_FILE': sys.argv[1], 'LOG_FORMAT': 'json',\n"
        "                                 'ALERT_WEBHOOK_URL': sys.argv[2]})\n"
        "with app.app_context():\n"
        "    print(check_and_alert(now=utcnow() + timedelta(seconds=1)).errors)\n"
    )
    try:
        one_dead_letter()
        result = subprocess.run(
            [sys.executable, "-c", script, str(log_file), alert_url("http-500", broken)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        broken.close()
    assert result.returncode == 0, result.stderr
    logged = log_file.read_text()
    assert "alert by webhook not sent" in logged and "500 Server Error" in logged
    assert [json.loads(line) for line in logged.splitlines()]  # JSON lines
    for secret in SECRET_PARTS:
        assert secret not in logged and secret not in result.stdout + result.stderr
