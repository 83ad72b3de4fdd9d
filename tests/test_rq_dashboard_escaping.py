"""Nothing a sender controls reaches the job fields rq-dashboard 0.9 prints unescaped.

rq-dashboard 0.9.0 renders a job's `description` and `exc_info` as HTML without
escaping (Parallels/rq-dashboard#526). Our job descriptions are built from the
event id and attempt number only, and a crashed job's exception text is replaced
(queueing.run_event_job) so that SQL parameters quoted in a database error — an
API's error text, a payer's e-mail — never land in Redis.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Iterator

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import create_engine, text

from webhooks_app.config import TestingConfig
from webhooks_app.queueing import get_queue
from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, make_app, notification, run_worker

HTML = '<img src=x onerror="alert(1)">'
MARKERS = ("<img", "onerror", "alert(1)", "&lt;img")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}


def post_hostile_notification(client, payment_id: str) -> int:
    """A signed notification with HTML in every field a sender can fill freely."""
    body = notification(payment_id)
    body.update(user_id=HTML, api_version=HTML, date_created=HTML, live_mode=HTML, extra=HTML)
    request_id = HTML
    response = client.post(
        f"/webhooks/mp?data.id={payment_id}&type=payment&note={HTML}",
        json=body,
        headers={
            "x-request-id": request_id,
            "x-signature": sign(WEBHOOK_SECRET, payment_id, request_id),
            "User-Agent": HTML,
            "X-Extra": HTML,
        },
    )
    assert response.status_code == 200, response.text
    return response.json["event_id"]


@contextlib.contextmanager
def database_locked() -> Iterator[None]:
    """Another connection holds an exclusive lock: the job's first query fails."""
    uri = TestingConfig.SQLALCHEMY_DATABASE_URI
    if uri.startswith("sqlite:///"):
        connection = sqlite3.connect(uri.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    engine = create_engine(uri)
    with engine.connect() as connection:
        connection.execute(text("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def test_a_crashed_job_shows_no_sender_content_in_rq_dashboard(app, sandbox):
    quick_failure = {"SQLITE_BUSY_TIMEOUT": 0.2}
    if not TestingConfig.SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
        quick_failure = {
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": "-c lock_timeout=300"}}
        }
    worker_app = make_app(sandbox, ADMIN_USERNAME="ops", ADMIN_PASSWORD="pw", **quick_failure)
    client = worker_app.test_client()
    payment = sandbox.state.add_payment(description=HTML, external_reference=HTML)
    event_id = post_hostile_notification(client, str(payment["id"]))

    with worker_app.app_context(), database_locked():
        run_worker(worker_app)
    queue = get_queue(app)
    failed = FailedJobRegistry(queue=queue).get_job_ids()
    assert len(failed) == 1
    job = Job.fetch(failed[0], connection=queue.connection)
    assert job.description == f"process webhook event {event_id} (attempt 1)"
    exc_info = job.latest_result().exc_string
    assert exc_info and "EventJobFailed" in exc_info
    assert "[SQL" not in exc_info and "parameters" not in exc_info

    name = queue.name
    pages = [
        f"/rq/0/data/jobs/{name}/failed/8/asc/1.json",
        f"/rq/0/data/job/{job.id}.json",
        f"/rq/0/view/job/{job.id}",
        f"/rq/0/view/jobs/{name}/failed/8/asc/1",
        "/rq/0/data/queues.json",
    ]
    for path in pages:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, path
        for marker in MARKERS:
            assert marker not in response.text, (path, marker)
    shown = client.get(f"/rq/0/data/job/{job.id}.json", headers=AUTH).json
    assert shown["exc_info"] == exc_info and shown["description"] == job.description


@pytest.mark.parametrize("attempt", [1, 7])
def test_job_descriptions_hold_ids_only(attempt):
    from webhooks_app.queueing import _job_options

    options = _job_options(12, attempt, "-replay")
    assert options["description"] == f"process webhook event 12 (attempt {attempt})"
