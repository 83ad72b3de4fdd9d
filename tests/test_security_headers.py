"""Browser-facing hardening: frame and sniffing protection, CSP, HSTS behind a proxy,
the session cookie's flags, and rq-dashboard's state changes refused on GET."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import rq_dashboard

from webhooks_app.blueprints.dashboard import STATE_CHANGING_ENDPOINTS
from webhooks_app.config import Config, DevelopmentConfig, ProductionConfig
from webhooks_app.queueing import get_queue
from webhooks_app.security import HSTS_VALUE

from conftest import api_headers, make_app, post_webhook

USERNAME, PASSWORD = "operator", "s3cret-pass"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
TEMPLATES = Path(__file__).resolve().parent.parent / "webhooks_app" / "templates"


@pytest.fixture
def admin_client(app, sandbox):
    return make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD).test_client()


HTML_PAGES = [
    "/admin/events",
    "/admin/payments",
    "/admin/subscriptions",
    "/admin/alerts",
    "/admin/stats",
    "/admin/accounts",
    "/admin/accounts/new",
    "/admin/accounts/default",
    "/rq/",
    "/rq/0/view/workers",
]


@pytest.mark.parametrize("path", HTML_PAGES)
def test_every_html_page_forbids_framing_and_sniffing_and_has_a_csp(admin_client, path):
    response = admin_client.get(path, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert response.headers["Cache-Control"] == "no-store"
    # Plain HTTP: no HSTS (it would be ignored, and is wrong for local development).
    assert "Strict-Transport-Security" not in response.headers


def test_rq_inline_script_carries_this_responses_nonce(admin_client):
    first, second = (admin_client.get("/rq/", headers=AUTH) for _ in range(2))
    nonces = []
    for page in (first, second):
        policy = page.headers["Content-Security-Policy"]
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}" type="text/javascript">' in page.text
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_our_copy_of_rq_dashboards_base_template_differs_only_by_the_nonce():
    upstream = Path(rq_dashboard.__file__).parent / "templates" / "rq_dashboard" / "base.html"
    ours = (TEMPLATES / "rq_dashboard" / "base.html").read_text()
    body = ours[ours.index("<!DOCTYPE html>") :]
    expected = upstream.read_text().replace(
        '<script type="text/javascript">',
        '<script nonce="{{ csp_nonce() }}" type="text/javascript">',
    )
    assert body == expected, "rq-dashboard's base.html changed: copy it again, with the nonce"


def test_json_surfaces_get_nosniff_and_a_closed_csp(client):
    response = client.get("/api/stats", headers=api_headers())
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


# -- behind a proxy ------------------------------------------------------------------


def test_behind_one_trusted_proxy_redirects_stay_https_and_hsts_is_sent(app, sandbox):
    client = make_app(
        sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD, PROXY_FIX_HOPS=1
    ).test_client()
    forwarded = {**AUTH, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    response = client.get("/rq", headers=forwarded)  # rq-dashboard redirects to /rq/
    assert response.status_code in (301, 308)
    assert response.headers["Location"].startswith("https://")
    assert response.headers["Strict-Transport-Security"] == HSTS_VALUE
    page = client.get("/admin/events", headers=forwarded)
    assert page.headers["Strict-Transport-Security"] == HSTS_VALUE
    # Only X-Forwarded-For/-Proto/-Port are believed: a forged host stays out of URLs.
    forged_host = client.get("/rq", headers={**forwarded, "X-Forwarded-Host": "evil.example"})
    assert "evil.example" not in forged_host.headers["Location"]


def test_without_trusted_proxies_forwarded_headers_are_ignored(app, admin_client):
    forwarded = {**AUTH, "X-Forwarded-Proto": "https"}
    response = admin_client.get("/rq", headers=forwarded)
    assert response.headers["Location"].startswith("http://")
    assert "Strict-Transport-Security" not in response.headers


def test_proxy_hops_default_to_one_in_production_only():
    assert ProductionConfig.PROXY_FIX_HOPS == 1
    assert Config.PROXY_FIX_HOPS == 0 and DevelopmentConfig.PROXY_FIX_HOPS == 0


# -- the session cookie ------------------------------------------------------------------


def set_cookie(response) -> str:
    cookies = [value for key, value in response.headers if key == "Set-Cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_the_session_cookie_is_samesite_lax_and_httponly(admin_client):
    cookie = set_cookie(admin_client.get("/admin/events", headers=AUTH))  # holds the CSRF token
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert "Secure" not in cookie  # development and tests run on plain HTTP


def test_the_session_cookie_is_secure_in_production(app, sandbox):
    assert ProductionConfig.SESSION_COOKIE_SECURE is True
    assert Config.SESSION_COOKIE_SAMESITE == "Lax"
    client = make_app(
        sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD, SESSION_COOKIE_SECURE=True
    ).test_client()
    cookie = set_cookie(client.get("/admin/events", headers=AUTH))
    assert "Secure" in cookie and "SameSite=Lax" in cookie


# -- rq-dashboard's state changes -----------------------------------------------------------


def test_every_rq_dashboard_route_that_accepts_post_is_known(app):
    posting = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("rq_dashboard.") and "POST" in rule.methods
    }
    assert posting == STATE_CHANGING_ENDPOINTS


def test_rq_requeue_on_get_is_refused(app, admin_client, sandbox):
    queue_name = app.config["RQ_QUEUE_NAME"]
    post_webhook(admin_client, sandbox.state.add_payment()["id"])
    job = get_queue(app).jobs[0]
    job.delete()  # gone from the queue; requeue_all would bring failed jobs back
    foreign = {**AUTH, "Referer": "http://evil.example/page.html"}
    for path in (f"/rq/requeue/{queue_name}", f"/rq/queue/{queue_name}/failed/empty"):
        response = admin_client.get(path, headers=foreign)
        assert response.status_code == 405, path
        assert "POST" in response.headers["Allow"]
    forged = admin_client.post(f"/rq/requeue/{queue_name}", headers=foreign)
    assert forged.status_code == 403
    same_site = admin_client.post(
        f"/rq/requeue/{queue_name}", headers={**AUTH, "Origin": "http://localhost"}
    )
    assert same_site.status_code == 200
