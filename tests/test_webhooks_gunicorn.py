"""POST /webhooks/mp under real gunicorn (the Procfile's gthread settings): what a hostile
sender can do to the body that the Flask test client cannot show (chunked transfer)."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from webhooks_app.extensions import db
from webhooks_app.models import WebhookEvent
from webhooks_app.signatures import sign

from conftest import API_TOKEN, WEBHOOK_SECRET, notification
from processes import Processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def web(app, sandbox, tmp_path):
    processes = Processes(tmp_path, sandbox.url)
    try:
        processes.start_web(workers=1)
        yield processes
    finally:
        processes.stop_all()


def stored() -> int:
    db.session.expire_all()
    return db.session.query(WebhookEvent).count()


def rejected(url: str, reason: str) -> float:
    metrics = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10
    ).text
    found = re.search(rf'^webhooks_rejected_total\{{reason="{reason}"\}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def chunked(body: bytes, size: int = 4096):
    """A generator body: requests sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(url: str, body: bytes) -> requests.Response:
    request_id = str(uuid.uuid4())
    return requests.post(
        f"{url}/webhooks/mp",
        params={"data.id": "123", "type": "payment"},
        data=chunked(body),
        headers={
            "Content-Type": "application/json",
            "x-request-id": request_id,
            "x-signature": sign(WEBHOOK_SECRET, "123", request_id),
        },
        timeout=10,
    )


def test_a_chunked_body_over_the_limit_is_413_nothing_stored_and_counted(app, web):
    limit = app.config["MAX_CONTENT_LENGTH"]
    head = json.dumps(notification(123)).encode()
    # Valid JSON up to the limit, then more: cut at the limit, it would parse and be stored.
    body = head + b" " * (limit - len(head)) + b"x" * 100
    before = rejected(web.url, "too_large")
    response = post_chunked(web.url, body)
    assert response.status_code == 413, response.text
    assert stored() == 0
    assert rejected(web.url, "too_large") == before + 1


def test_a_chunked_body_within_the_limit_is_accepted(app, web):
    response = post_chunked(web.url, json.dumps(notification(123)).encode())
    assert response.status_code == 200, response.text
    assert stored() == 1


def test_json_nested_980_deep_is_400_not_503(app, web):
    text = json.dumps(notification(123))
    body = (text[:-1] + ', "extra": ' + "[" * 980 + "]" * 980 + "}").encode()
    response = post_chunked(web.url, body)
    assert response.status_code == 400 and "nested" in response.json()["error"]
    assert stored() == 0
