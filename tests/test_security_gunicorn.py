"""The hardening that depends on the server, under real gunicorn (2 processes).

Behind one trusted proxy (PROXY_FIX_HOPS=1, as on Heroku): the client address the
login throttle counts is the one the proxy appended to X-Forwarded-For, failures
are counted across gunicorn's processes (in Redis), and X-Forwarded-Proto: https
gives https redirects and HSTS.
"""

from __future__ import annotations

import pytest
import requests

from processes import Processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

USERNAME, PASSWORD = "operator", "gunicorn-pass"


@pytest.fixture
def web(app, sandbox, tmp_path):
    processes = Processes(
        tmp_path,
        sandbox.url,
        ADMIN_USERNAME=USERNAME,
        ADMIN_PASSWORD=PASSWORD,
        PROXY_FIX_HOPS="1",
        LOGIN_FAILURE_LIMIT="5/minute",
    )
    try:
        yield processes.start_web(workers=2)
    finally:
        processes.stop_all()


def login(url: str, client_addr: str, password: str, username: str = USERNAME):
    # The proxy appends the address it saw; whatever the client put before it is not believed.
    forwarded = f"10.9.9.9, {client_addr}"
    return requests.get(
        f"{url}/admin/payments",
        auth=(username, password),
        headers={"X-Forwarded-For": forwarded},
        timeout=10,
    )


def test_failed_logins_are_throttled_across_processes_per_forwarded_address(web):
    # A new connection each: gunicorn's two processes both answer some of them.
    codes = [login(web, "203.0.113.9", "guess", username=f"u{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    throttled = login(web, "203.0.113.9", PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    # Another client (same spoofed prefix, another real address) logs in.
    assert login(web, "203.0.113.10", PASSWORD).status_code == 200


def test_forwarded_https_gives_https_redirects_and_hsts(web):
    response = requests.get(
        f"{web}/rq",
        auth=(USERNAME, PASSWORD),
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (301, 308)
    assert response.headers["Location"].startswith("https://")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = requests.get(f"{web}/healthz", timeout=10)
    assert "Strict-Transport-Security" not in plain.headers
