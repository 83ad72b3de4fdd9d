"""Failed Basic logins are throttled per client address and per username (Redis)."""

from __future__ import annotations

import base64
import logging
import socket
import time

import pytest

from webhooks_app.config import ConfigError
from webhooks_app.metrics import LOGIN_FAILURES

from conftest import make_app

USERNAME, PASSWORD = "operator", "s3cret-pass"
PAGE = "/admin/payments"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def admin(sandbox, **overrides):
    settings = {"ADMIN_USERNAME": USERNAME, "ADMIN_PASSWORD": PASSWORD, **overrides}
    return make_app(sandbox, **settings).test_client()


def get(client, username=USERNAME, password=PASSWORD, addr="198.51.100.1", path=PAGE):
    return client.get(path, headers=basic(username, password), environ_base={"REMOTE_ADDR": addr})


def count(reason: str) -> float:
    return LOGIN_FAILURES.labels(reason=reason)._value.get()


def test_after_the_budget_of_failures_every_login_is_429_with_retry_after(app, sandbox, caplog):
    client = admin(sandbox, LOGIN_FAILURE_LIMIT="10/minute")
    invalid, throttled = count("invalid"), count("throttled")
    for _ in range(10):
        assert get(client, password="guess").status_code == 401
    for path in (PAGE, "/rq/"):
        refused = get(client, password="guess", path=path)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # The right password too, while the window lasts: guessing learns nothing from 429s.
    assert get(client).status_code == 429
    assert count("invalid") - invalid == 10 and count("throttled") - throttled == 3
    assert "failed login from 198.51.100.1" in caplog.text
    assert "login throttled for 198.51.100.1" in caplog.text


def test_correct_logins_never_spend_the_budget(app, sandbox):
    client = admin(sandbox, LOGIN_FAILURE_LIMIT="3/minute")
    assert get(client, password="typo").status_code == 401
    for _ in range(20):
        assert get(client).status_code == 200
    assert get(client, password="typo").status_code == 401
    assert get(client, password="typo").status_code == 401
    assert get(client, password="typo").status_code == 429


def test_failures_count_per_address_and_per_username(app, sandbox):
    client = admin(sandbox, LOGIN_FAILURE_LIMIT="3/minute")
    # One address trying many usernames.
    for name in ("a", "b", "c"):
        assert get(client, username=name, password="x", addr="192.0.2.1").status_code == 401
    assert get(client, username="d", password="x", addr="192.0.2.1").status_code == 429
    # Many addresses trying one username.
    for addr in ("192.0.2.10", "192.0.2.11", "192.0.2.12"):
        assert get(client, password="x", addr=addr).status_code == 401
    assert get(client, addr="192.0.2.13").status_code == 429
    # Someone else, elsewhere, is not affected.
    assert get(client, username="other", password="x", addr="192.0.2.99").status_code == 401


def test_a_correct_password_is_locked_out_no_longer_than_the_window(app, sandbox):
    client = admin(sandbox, LOGIN_FAILURE_LIMIT="2 per 1 second")
    assert get(client, password="x").status_code == 401
    assert get(client, password="x").status_code == 401
    locked = get(client)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert get(client).status_code == 200


def test_redis_down_the_login_still_works_and_it_is_logged(app, sandbox, caplog):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = admin(sandbox, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    caplog.set_level(logging.WARNING)
    assert get(client).status_code == 200
    assert get(client, password="x").status_code == 401
    assert "login throttle unavailable" in caplog.text


def test_the_limit_setting_is_checked_and_can_be_off(app, sandbox):
    with pytest.raises(ConfigError, match="LOGIN_FAILURE_LIMIT"):
        admin(sandbox, LOGIN_FAILURE_LIMIT="lots")
    client = admin(sandbox, LOGIN_FAILURE_LIMIT="off")
    for _ in range(15):
        assert get(client, password="x").status_code == 401
    assert get(client).status_code == 200
