"""Every admin and /rq page works under its Content-Security-Policy in a real browser.

Headless Chromium (Debian's `chromium`, driven by playwright) loads each page from
gunicorn on loopback, with seeded data so that every page has something to render,
and the test fails on any console error or warning and on any
`securitypolicyviolation` event. Without chromium the test is skipped, except under
CI=true, where that is a failure (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil

import pytest
from rq import Queue, SimpleWorker
from test_authorized_payments import notify

from webhooks_app.extensions import db
from webhooks_app.models import MpAlert
from webhooks_app.queueing import get_queue, job_id

from conftest import dead_letter, drain, post_webhook
from processes import Processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

USERNAME, PASSWORD = "operator", "browser-test-password"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Registered before any script of the page runs.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def sync_playwright():
    """playwright's entry point, or a skip (a failure under CI) saying what is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        missing = "playwright is not installed (pip install -r requirements-dev.txt)"
    if CHROMIUM is None:
        missing = "chromium is not installed (apt-get install chromium chromium-driver)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser test: {missing}")
        pytest.skip(missing)
    return start()


@pytest.fixture
def seeded(app, client, sandbox):
    """A succeeded event with its payment, a subscription with a charge, a dead letter, a
    queued job and a failed job."""
    paid = sandbox.state.add_payment(status="approved")
    post_webhook(client, paid["id"])
    drain(app)
    preapproval = sandbox.state.add_preapproval(payer_email="subscriber@example.com")
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])
    notify(client, charge["id"])
    drain(app)
    # A fraud alert about it, for /admin/alerts and the payment's page to list.
    raw = {"type": "stop_delivery_op_wh", "data": {"payment_id": paid["id"], "merchant_order": 7}}
    db.session.add(
        MpAlert(
            kind=MpAlert.FRAUD_ALERT,
            mp_resource_id=str(paid["id"]),
            mp_payment_id=str(paid["id"]),
            status="stop_delivery",
            detail="desc",
            raw=raw,
        )
    )
    db.session.commit()
    failed_event = dead_letter(app, client, sandbox, 1)[0]
    queued_event = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
    # A job in RQ's failed registry, so that its page shows an exc_info.
    scratch = Queue("browser-test-failed", connection=get_queue(app).connection)
    crashed = scratch.enqueue("builtins.int", "not a number")
    SimpleWorker([scratch], connection=scratch.connection).work(burst=True)
    return {
        "payment": str(paid["id"]),
        "subscription": preapproval["id"],
        "failed_event": failed_event,
        "queued_job": job_id(queued_event, 1),
        "crashed_job": crashed.id,
        "queue": get_queue(app).name,
        "scratch_queue": scratch.name,
    }


@pytest.fixture
def web(seeded, sandbox, tmp_path):
    processes = Processes(tmp_path, sandbox.url, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    try:
        yield processes.start_web(workers=1)
    finally:
        processes.stop_all()


def test_no_page_breaks_its_content_security_policy(web, seeded):
    # (path, text the page's own scripts must have rendered, or None)
    pages = [
        ("/admin/", None),
        ("/admin/events", None),
        ("/admin/events?status=failed", None),
        (f"/admin/events/{seeded['failed_event']}", None),
        ("/admin/payments", None),
        (f"/admin/payments/{seeded['payment']}", None),
        ("/admin/subscriptions", None),
        (f"/admin/subscriptions/{seeded['subscription']}", None),
        ("/admin/alerts", None),
        ("/admin/alerts?kind=claim", None),
        ("/admin/stats", None),
        ("/admin/accounts", None),
        ("/admin/accounts/new", None),
        ("/admin/accounts/default", None),
        ("/rq/", seeded["queue"]),
        ("/rq/0/view/workers", None),
        (f"/rq/0/view/jobs/{seeded['queue']}/queued/8/asc/1", seeded["queued_job"]),
        (f"/rq/0/view/jobs/{seeded['scratch_queue']}/failed/8/asc/1", seeded["crashed_job"]),
        (f"/rq/0/view/job/{seeded['queued_job']}", "process webhook event"),
        (f"/rq/0/view/job/{seeded['crashed_job']}", "ValueError"),
    ]
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": USERNAME, "password": PASSWORD}
            )
            context.add_init_script(RECORD_VIOLATIONS)
            page = context.new_page()
            current = {"path": ""}
            page.on(
                "console",
                lambda message: (
                    message.type in ("error", "warning")
                    and problems.append(
                        f"{current['path']}: console {message.type}: {message.text}"
                    )
                ),
            )
            page.on(
                "response",
                lambda response: (
                    response.status >= 400
                    and problems.append(f"{current['path']}: HTTP {response.status} {response.url}")
                ),
            )
            page.on("pageerror", lambda error: problems.append(f"{current['path']}: {error}"))
            for path, rendered in pages:
                current["path"] = path
                response = page.goto(web + path, wait_until="networkidle")
                assert response is not None and response.status == 200, path
                assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
                if rendered is not None:  # rq-dashboard's scripts ran and filled the page
                    page.get_by_text(rendered).first.wait_for(timeout=10_000)
                problems.extend(
                    f"{path}: CSP violation: {v}" for v in page.evaluate("window.__cspViolations")
                )
        finally:
            browser.close()
    assert problems == [], "\n".join(problems)
