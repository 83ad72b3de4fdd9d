"""The admin pages and /rq: authentication, what they show, what their actions change."""

from __future__ import annotations

import base64
import re

import pytest
from factories import add_event
from rq.job import Job

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookEvent
from webhooks_app.queueing import get_queue, get_scheduler, job_id

from conftest import (
    api_headers,
    dead_letter,
    drain,
    make_app,
    post_webhook,
    run_worker,
    statuses,
)

pytestmark = pytest.mark.timeout(60)

USERNAME, PASSWORD = "operator", "correct horse battery staple"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(USERNAME, PASSWORD)


@pytest.fixture
def app(app, sandbox):
    """The conftest app (emptied database and Redis), with admin credentials configured."""
    admin_app = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    with admin_app.app_context():
        yield admin_app
        db.session.remove()


def csrf_token(client, path: str = "/admin/events") -> str:
    page = client.get(path, headers=AUTH)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the page has no CSRF token"
    return match.group(1)


def succeed(app, client, sandbox, **payment_fields) -> int:
    payment = sandbox.state.add_payment(**payment_fields)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    run_worker(app)
    assert statuses()[event_id] == EventStatus.SUCCESS
    return event_id


# -- authentication ---------------------------------------------------------------


PAGES = ["/admin/", "/admin/events", "/admin/payments", "/admin/stats", "/rq/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_the_admin_credentials(client, path):
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic ")
    assert client.get(path, headers=basic(USERNAME, "wrong")).status_code == 401
    assert client.get(path, headers=basic("someone", PASSWORD)).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer test-api-token"}).status_code == 401
    allowed = client.get(path, headers=AUTH)
    assert allowed.status_code in (200, 302)
    if path.startswith("/admin"):
        assert allowed.headers["X-Frame-Options"] == "DENY"
        assert allowed.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/admin/events", "/rq/", "/admin/events/1/retry"])
def test_without_configured_credentials_the_admin_is_disabled(sandbox, app, path):
    bare = make_app(sandbox).test_client()
    response = bare.get(path) if not path.endswith("retry") else bare.post(path)
    assert response.status_code == 503
    assert "ADMIN_USERNAME" in response.text and "ADMIN_PASSWORD" in response.text


def test_a_password_alone_does_not_enable_it(sandbox, app):
    half = make_app(sandbox, ADMIN_PASSWORD="only-a-password").test_client()
    assert half.get("/admin/events", headers=basic("", "only-a-password")).status_code == 503


def test_pages_never_show_configured_secrets(app, client, sandbox):
    succeed(app, client, sandbox)
    event_id = dead_letter(app, client, sandbox, 1)[0]
    pages = [*PAGES[1:4], f"/admin/events/{event_id}", "/admin/stats?hours=24"]
    secrets = [PASSWORD, app.config["API_TOKEN"], app.config["MP_ACCESS_TOKEN"]]
    secrets += [app.config["GHL_API_TOKEN"], app.config["MP_WEBHOOK_SECRET"], app.secret_key]
    for path in pages:
        text = client.get(path, headers=AUTH).text
        for secret in secrets:
            assert secret not in text, f"{path} shows a secret"


# -- pages ------------------------------------------------------------------------


def test_events_list_shows_events_with_status_badges(app, client, sandbox):
    ok = succeed(app, client, sandbox, payer={"email": "maria@shop.test"})
    failed = dead_letter(app, client, sandbox, 1)[0]
    ignored = client.post("/webhooks/mp?topic=point_integration_wh&id=5").json["event_id"]
    run_worker(app)

    page = client.get("/admin/events", headers=AUTH)
    assert page.status_code == 200
    for event_id in (ok, failed, ignored):
        assert f'href="/admin/events/{event_id}"' in page.text
    for status in ("success", "failed", "ignored"):
        assert f'class="badge badge-{status}"' in page.text
    assert "maria@shop.test" in page.text and "3 matching event(s)" in page.text
    # Newest first by default; the header flips it.
    assert page.text.index(f"/admin/events/{ignored}") < page.text.index(f"/admin/events/{ok}")
    ascending = client.get("/admin/events?order=asc", headers=AUTH).text
    assert ascending.index(f"/admin/events/{ok}") < ascending.index(f"/admin/events/{ignored}")


def test_events_list_filters(app, client, sandbox):
    ok = succeed(app, client, sandbox, payer={"email": "maria@shop.test"})
    failed = dead_letter(app, client, sandbox, 1)[0]
    ignored = client.post("/webhooks/mp?topic=point_integration_wh&id=5").json["event_id"]
    run_worker(app)

    def listed(query: str) -> set[int]:
        page = client.get(f"/admin/events?{query}", headers=AUTH)
        assert page.status_code == 200
        return {int(n) for n in re.findall(r'name="ids" value="(\d+)"', page.text)}

    assert listed("") == {ok, failed, ignored}
    assert listed("status=failed") == {failed}
    assert listed("type=point_integration_wh") == {ignored}
    assert listed("q=maria%40shop") == {ok}
    assert listed(f"q={db.session.get(WebhookEvent, failed).resource_id}") == {failed}
    assert listed("since=1h") == {ok, failed, ignored}
    assert listed("until=2020-01-01") == set()

    bad = client.get("/admin/events?since=last+tuesday", headers=AUTH)
    assert bad.status_code == 400 and "since: must be an ISO 8601" in bad.text


def test_events_list_pages_by_cursor(app, client):
    events = [add_event() for _ in range(7)]
    newest_first = [event.id for event in reversed(events)]

    def listed(text: str) -> list[int]:
        return [int(n) for n in re.findall(r'name="ids" value="(\d+)"', text)]

    first = client.get("/admin/events?limit=3", headers=AUTH).text
    assert listed(first) == newest_first[:3] and "7 matching event(s)" in first
    older = re.search(r'href="([^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older, headers=AUTH).text
    assert listed(second) == newest_first[3:6]
    newer = re.search(r'href="([^"]*before=[^"]+)"', second).group(1).replace("&amp;", "&")
    assert listed(client.get(newer, headers=AUTH).text) == newest_first[:3]
    garbage = client.get("/admin/events?after=garbage", headers=AUTH)
    assert garbage.status_code == 400 and "not a cursor" in garbage.text


def test_event_detail_shows_payload_headers_attempts_payment_and_job(app, client, sandbox):
    payment = sandbox.state.add_payment(payer={"email": "carla@shop.test"})
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=1)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    drain(app)  # attempt 1 fails with a 500, attempt 2 (a second later) succeeds
    assert statuses()[event_id] == EventStatus.SUCCESS

    page = client.get(f"/admin/events/{event_id}", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    assert "payment.updated" in text and f"&#34;{payment['id']}&#34;" in text  # the payload
    assert "x-signature" in text and "x-request-id" in text  # the stored headers
    assert "500" in text and "traceback" in text and "Traceback (most recent call last)" in text
    assert 'class="badge outcome-retry"' in text and 'class="badge outcome-success"' in text
    assert f'href="/admin/payments/{payment["id"]}"' in text and "carla@shop.test" in text
    assert job_id(event_id, 2) in text and "finished" in text  # the job's state in RQ
    assert f"/rq/0/view/job/{job_id(event_id, 2)}" in text
    assert client.get("/admin/events/999999", headers=AUTH).status_code == 404
    assert client.get(f"/admin/events/{2**70}", headers=AUTH).status_code == 404


def test_payments_list_and_detail(app, client, sandbox):
    event_id = succeed(app, client, sandbox, status="approved", payer={"email": "ana@shop.test"})
    payment = db.session.query(Payment).one()

    listing = client.get("/admin/payments", headers=AUTH)
    assert listing.status_code == 200
    assert payment.mp_payment_id in listing.text and "ana@shop.test" in listing.text
    assert "mp-payment-approved" in listing.text and payment.ghl_contact_id in listing.text
    assert "100.00" in listing.text and "BRL" in listing.text
    assert (
        client.get("/admin/payments?status=rejected", headers=AUTH).text.count("/admin/payments/")
        == 0
    )
    assert client.get("/admin/payments?status=BAD!", headers=AUTH).status_code == 400

    detail = client.get(f"/admin/payments/{payment.mp_payment_id}", headers=AUTH)
    assert detail.status_code == 200
    assert "ana@shop.test" in detail.text and payment.ghl_contact_id in detail.text
    assert "mp-payment-approved" in detail.text
    assert f'href="/admin/events/{event_id}"' in detail.text  # the events that touched it
    assert client.get("/admin/payments/000", headers=AUTH).status_code == 404


def test_stats_page(app, client, sandbox):
    succeed(app, client, sandbox)
    dead_letter(app, client, sandbox, 1)
    page = client.get("/admin/stats", headers=AUTH)
    assert page.status_code == 200
    text = page.text
    assert text.count("<svg") == 3  # throughput, statuses, latency
    assert "Events received per minute" in text and "50.0%" in text  # 1 success, 1 failed
    assert 'href="/admin/events?status=failed">failed: 1' in text
    assert "Latency p50 / p95 / p99" in text and "1 event(s) in the window" in text
    assert "Queue depth" in text and 'href="/rq/"' in text
    assert client.get("/admin/stats?hours=24", headers=AUTH).status_code == 200
    # The dashboard refreshes itself and splits each minute's column by status.
    assert '<meta http-equiv="refresh" content="30">' in text
    assert 'class="bar badge-success"' in text and 'class="bar badge-failed"' in text


# -- actions ----------------------------------------------------------------------


def test_forms_need_a_csrf_token(app, client, sandbox):
    failed = dead_letter(app, client, sandbox, 1)[0]
    for path, data in [
        (f"/admin/events/{failed}/retry", {}),
        ("/admin/events/retry-selected", {"ids": str(failed)}),
        ("/admin/events/retry-failed", {}),
    ]:
        response = client.post(path, data=data, headers=AUTH)
        assert response.status_code == 400 and "CSRF" in response.text
        forged = client.post(path, data={**data, "csrf_token": "forged"}, headers=AUTH)
        assert forged.status_code == 400
    assert statuses()[failed] == EventStatus.FAILED
    assert get_queue(app).count == 0


def test_webhooks_and_api_posts_need_no_csrf_token(app, client, sandbox):
    failed = dead_letter(app, client, sandbox, 1)[0]
    api = client.post(f"/api/webhook-events/{failed}/retry", headers=api_headers())
    assert api.status_code == 200 and api.json["requeued"] == 1
    # The admin's Basic credentials are refused on the API (a browser would send them anywhere).
    basic = client.post(f"/api/webhook-events/{failed}/retry", headers=AUTH)
    assert basic.status_code == 401


def test_retry_one_event(app, client, sandbox):
    failed, other = dead_letter(app, client, sandbox, 2)
    token = csrf_token(client)
    response = client.post(
        f"/admin/events/{failed}/retry", data={"csrf_token": token}, headers=AUTH
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/events/{failed}")
    assert statuses() == {failed: EventStatus.PENDING, other: EventStatus.FAILED}
    assert get_queue(app).job_ids == [job_id(failed, 2)]
    page = client.get(f"/admin/events/{failed}", headers=AUTH).text
    assert f"Re-queued 1 event: event {failed}." in page
    drain(app)
    assert statuses() == {failed: EventStatus.SUCCESS, other: EventStatus.FAILED}


def test_retrying_a_success_needs_force(app, client, sandbox):
    ok = succeed(app, client, sandbox)
    token = csrf_token(client)
    client.post(f"/admin/events/{ok}/retry", data={"csrf_token": token}, headers=AUTH)
    page = client.get(f"/admin/events/{ok}", headers=AUTH).text
    assert "already succeeded" in page and 'name="force"' in page
    assert statuses()[ok] == EventStatus.SUCCESS and get_queue(app).count == 0

    client.post(f"/admin/events/{ok}/retry", data={"csrf_token": token, "force": "1"}, headers=AUTH)
    assert statuses()[ok] == EventStatus.PENDING and get_queue(app).count == 1


def test_retry_selected_events(app, client, sandbox):
    first, second, third = dead_letter(app, client, sandbox, 3)
    ok = succeed(app, client, sandbox)
    token = csrf_token(client)
    response = client.post(
        "/admin/events/retry-selected",
        data={"csrf_token": token, "ids": [str(first), str(third), str(ok)], "status": "failed"},
        headers=AUTH,
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/events?status=failed")
    assert statuses() == {
        first: EventStatus.PENDING,
        second: EventStatus.FAILED,
        third: EventStatus.PENDING,
        ok: EventStatus.SUCCESS,  # selected, but it succeeded and force was not ticked
    }
    assert sorted(get_queue(app).job_ids) == sorted([job_id(first, 2), job_id(third, 2)])
    page = client.get("/admin/events?status=failed", headers=AUTH).text
    assert "Re-queued 2 event(s); 1 refused." in page and "already succeeded" in page

    token = csrf_token(client)
    for ids, message in [([str(2**70)], "1 not found"), (["x"], None), ([], "No event selected")]:
        response = client.post(
            "/admin/events/retry-selected", data={"csrf_token": token, "ids": ids}, headers=AUTH
        )
        if message is None:
            assert response.status_code == 400
        else:
            assert message in client.get("/admin/events", headers=AUTH).text
    assert get_queue(app).count == 2


def test_bulk_retry_of_every_failed_event_matching_the_filter(app, client, sandbox):
    failed = dead_letter(app, client, sandbox, 4)
    other_type = add_event(status=EventStatus.FAILED, type="merchant_order").id
    ok = succeed(app, client, sandbox)
    assert get_queue(app).count == 0

    token = csrf_token(client)
    response = client.post(
        "/admin/events/retry-failed",
        data={"csrf_token": token, "type": "payment", "order": "asc"},
        headers=AUTH,
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/events?type=payment&order=asc")
    # Exactly the 4 failed payment events were re-queued, one job each.
    assert sorted(get_queue(app).job_ids) == sorted(job_id(event_id, 2) for event_id in failed)
    assert get_scheduler(app).count() == 0
    page = client.get("/admin/events?type=payment", headers=AUTH).text
    assert "Re-queued 4 event(s)." in page

    drain(app)  # and they run
    expected = dict.fromkeys(failed, EventStatus.SUCCESS)
    assert statuses() == {**expected, other_type: EventStatus.FAILED, ok: EventStatus.SUCCESS}


def test_bulk_retry_with_a_filter_that_excludes_failed_retries_nothing(app, client, sandbox):
    failed = dead_letter(app, client, sandbox, 1)[0]
    token = csrf_token(client)
    client.post(
        "/admin/events/retry-failed",
        data={"csrf_token": token, "status": "success"},
        headers=AUTH,
    )
    assert statuses()[failed] == EventStatus.FAILED and get_queue(app).count == 0
    assert "Re-queued 0 event(s)." in client.get("/admin/events", headers=AUTH).text


# -- rq-dashboard -----------------------------------------------------------------


def test_rq_dashboard_shows_our_queue_and_jobs(app, client, sandbox):
    ids = [
        post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"] for _ in range(2)
    ]
    queue_name = app.config["RQ_QUEUE_NAME"]

    overview = client.get("/rq/", headers=AUTH)
    assert overview.status_code == 200 and "RQ" in overview.text
    queues = client.get("/rq/0/data/queues.json", headers=AUTH).json["queues"]
    ours = next(queue for queue in queues if queue["name"] == queue_name)
    assert ours["count"] == 2
    jobs = client.get(f"/rq/0/data/jobs/{queue_name}/queued/8/asc/1.json", headers=AUTH).json
    assert [job["id"] for job in jobs["jobs"]] == [job_id(event_id, 1) for event_id in ids]
    assert "process webhook event" in jobs["jobs"][0]["description"]
    page = client.get(f"/rq/0/view/jobs/{queue_name}/queued/8/asc/1", headers=AUTH)
    assert page.status_code == 200 and queue_name in page.text
    assert client.get("/rq/0/data/queues.json").status_code == 401


def test_rq_dashboard_refuses_cross_site_posts(app, client, sandbox):
    event_id = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
    target = job_id(event_id, 1)
    forged = client.post(
        f"/rq/job/{target}/delete", headers={**AUTH, "Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert Job.exists(target, connection=get_queue(app).connection)
    same_site = client.post(
        f"/rq/job/{target}/delete", headers={**AUTH, "Origin": "http://localhost"}
    )
    assert same_site.status_code == 200
    assert not Job.exists(target, connection=get_queue(app).connection)
