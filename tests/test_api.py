"""The JSON API: events, payments, retries, stats; filters, pages, authentication."""

import base64
from datetime import datetime, timedelta

import pytest
from factories import add_event, add_payment
from sqlalchemy import insert

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.pagination import COUNT_CAP
from webhooks_app.queueing import get_queue, job_id
from webhooks_app.timeutil import utcnow

from conftest import api_headers, dead_letter, drain, make_app, post_webhook, run_worker, statuses


def test_api_requires_the_token(client):
    assert client.get("/api/webhook-events").status_code == 401
    wrong = client.get("/api/webhook-events", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json["error"]
    basic = client.get("/api/payments", headers={"Authorization": "Basic dGVzdC1hcGktdG9rZW4="})
    assert basic.status_code == 401


def test_api_without_a_configured_token_is_503(sandbox):
    app = make_app(sandbox, API_TOKEN=None)
    response = app.test_client().get("/api/webhook-events", headers=api_headers())
    assert response.status_code == 503
    assert "API_TOKEN" in response.json["error"]


def test_list_events_with_filters(app, client, sandbox):
    payment = sandbox.state.add_payment()
    post_webhook(client, payment["id"])
    post_webhook(client, 404404)  # will keep failing: stays pending after one attempt
    client.post("/webhooks/mp?topic=point_integration_wh&id=5")
    run_worker(app)

    everything = client.get("/api/webhook-events", headers=api_headers()).json
    assert everything["total"] == 3 and len(everything["events"]) == 3
    first = everything["events"][0]
    for field in (
        "id",
        "webhook_id",
        "type",
        "action",
        "resource_id",
        "status",
        "attempts",
        "last_error",
        "next_retry_at",
        "received_at",
        "processed_at",
    ):
        assert field in first

    success = client.get("/api/webhook-events?status=success", headers=api_headers()).json
    assert [e["resource_id"] for e in success["events"]] == [str(payment["id"])]
    assert success["events"][0]["payment_id"] == str(payment["id"])
    pending = client.get("/api/webhook-events?status=pending", headers=api_headers()).json
    assert pending["total"] == 1 and "404" in pending["events"][0]["last_error"]
    orders = client.get("/api/webhook-events?type=point_integration_wh", headers=api_headers()).json
    assert [e["status"] for e in orders["events"]] == ["ignored"]
    limited = client.get("/api/webhook-events?limit=1", headers=api_headers()).json
    assert limited["total"] == 3 and len(limited["events"]) == 1


@pytest.mark.parametrize("query", ["status=nope", "limit=abc", "limit=0"])
def test_bad_filters_are_400(client, query):
    response = client.get(f"/api/webhook-events?{query}", headers=api_headers())
    assert response.status_code == 400 and response.json["error"]


def test_list_payments(app, client, sandbox):
    payment = sandbox.state.add_payment(status="approved")
    post_webhook(client, payment["id"])
    run_worker(app)
    payments = client.get("/api/payments", headers=api_headers()).json["payments"]
    assert len(payments) == 1
    assert payments[0]["mp_payment_id"] == str(payment["id"])
    assert payments[0]["status"] == "approved"
    assert payments[0]["tags_applied"] == ["mp-payment-approved"]


# -- authentication ------------------------------------------------------------


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_credentials_are_refused_on_the_api(sandbox, app):
    # A browser caches the admin's Basic credentials and sends them with any
    # site's request: /api takes the bearer token only (cross-site request forgery).
    with_admin = make_app(sandbox, ADMIN_USERNAME="ops", ADMIN_PASSWORD="pw").test_client()
    refused = with_admin.get("/api/webhook-events", headers=basic("ops", "pw"))
    assert refused.status_code == 401 and refused.json["error"]
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    forged = with_admin.post(
        "/api/webhook-events/retry",
        data='{"status": "success,failed", "force": true}',
        content_type="text/plain",
        headers=basic("ops", "pw"),
    )
    assert forged.status_code == 401
    assert with_admin.get("/api/stats", headers=api_headers()).status_code == 200
    # Admin credentials alone do not enable the API.
    admin_only = make_app(sandbox, API_TOKEN=None, ADMIN_USERNAME="ops", ADMIN_PASSWORD="pw")
    response = admin_only.test_client().get("/api/payments", headers=basic("ops", "pw"))
    assert response.status_code == 503 and "API_TOKEN" in response.json["error"]


def test_the_probe_of_issue_15_replays_nothing(app, client):
    """curl -u ADMIN:PASS -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' …"""
    failed = add_event(status=EventStatus.FAILED).id
    body = '{"status":"success,failed","force":true}'
    for headers, content_type, code in [
        ({"Origin": "http://evil.example"}, "application/json", 403),
        ({"Origin": "null"}, "application/json", 403),
        ({}, "text/plain", 415),
        ({}, "application/x-www-form-urlencoded", 415),
        ({"Origin": "http://evil.example"}, "text/plain", 403),
    ]:
        response = client.post(
            "/api/webhook-events/retry",
            data=body,
            content_type=content_type,
            headers={**api_headers(), **headers},
        )
        assert response.status_code == code and response.json["error"], (headers, content_type)
    # A foreign Origin is refused on reads too (a page could read the answer).
    read = client.get("/api/stats", headers={**api_headers(), "Origin": "http://evil.example"})
    assert read.status_code == 403
    assert statuses()[failed] == EventStatus.FAILED and get_queue(app).count == 0
    # Same origin, JSON: accepted; no body and no type (curl -X POST): accepted.
    ok = client.post(
        "/api/webhook-events/retry",
        data=body,
        content_type="application/json",
        headers={**api_headers(), "Origin": "http://localhost"},
    )
    assert ok.status_code == 200 and ok.json["requeued"] == 1
    empty = client.post(f"/api/webhook-events/{failed}/retry", headers=api_headers())
    assert empty.status_code == 200


@pytest.mark.parametrize("path", ["/api/webhook-events/retry", "/api/webhook-events/1/retry"])
@pytest.mark.parametrize(
    "body",
    [b"[" * 60000, b'{"a":' * 40 + b"1" + b"}" * 40, b"\xff\xfe"],
    ids=["60000", "40", "utf8"],
)
def test_deeply_nested_or_undecodable_bodies_are_400(app, client, path, body):
    add_event(status=EventStatus.FAILED)
    response = client.post(path, data=body, content_type="application/json", headers=api_headers())
    assert response.status_code == 400 and response.json["error"]
    assert get_queue(app).count == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/webhook-events/1"),
        ("post", "/api/webhook-events/1/retry"),
        ("post", "/api/webhook-events/retry"),
        ("get", "/api/payments/1"),
        ("get", "/api/stats"),
    ],
)
def test_every_new_endpoint_needs_credentials(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401 and response.json["error"]


def test_the_openapi_document_is_public(client):
    document = client.get("/api/openapi.json")
    assert document.status_code == 200 and document.json["openapi"].startswith("3.")
    assert "/api/webhook-events/{event_id}/retry" in document.json["paths"]


# -- listing: filters and pages ---------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, 0)


def event_ids(response) -> list[int]:
    assert response.status_code == 200, response.json
    return [event["id"] for event in response.json["events"]]


def test_event_filters_return_the_right_rows(app, client):
    ana = add_payment(501, payer_email="ana@shop.test")
    old_failed = add_event(status=EventStatus.FAILED, received_at=NOW - timedelta(days=3))
    new_failed = add_event(status=EventStatus.FAILED, received_at=NOW, resource_id="9001")
    success = add_event(status=EventStatus.SUCCESS, received_at=NOW, payment_id=ana.id)
    order = add_event(
        status=EventStatus.IGNORED, type="merchant_order", received_at=NOW - timedelta(hours=2)
    )

    def listed(query: str) -> set[int]:
        return set(event_ids(client.get(f"/api/webhook-events?{query}", headers=api_headers())))

    assert listed("status=failed") == {old_failed.id, new_failed.id}
    assert listed("status=failed,ignored") == {old_failed.id, new_failed.id, order.id}
    assert listed("type=merchant_order") == {order.id}
    assert listed("since=2026-11-29T00:00:00Z") == {new_failed.id, success.id, order.id}
    assert listed("until=2026-11-28") == {old_failed.id}
    assert listed("since=2026-11-29T09:00:00&until=2026-11-29T11:00:00") == {order.id}
    assert listed("since=2026-11-29T07:00:00-04:00") == {new_failed.id, success.id}
    assert listed("q=9001") == {new_failed.id}
    assert listed("q=ANA@shop") == {success.id}
    assert listed(f"q={order.webhook_id}") == {order.id}
    assert listed("status=success&q=9001") == set()


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-02-30",
        "since=2026-11-29&until=2026-11-01",
        "status=failed,nope",
        "q=%00",
        "order=sideways",
        "cursor=not-a-cursor",
        "limit=-5",
    ],
)
def test_bad_filter_values_are_400_with_a_message(client, query):
    response = client.get(f"/api/webhook-events?{query}", headers=api_headers())
    assert response.status_code == 400
    assert response.json["error"].split(":")[0] in query


def test_total_stops_counting_at_the_cap(app, client):
    # Past COUNT_CAP matches the answer is "more than COUNT_CAP", not an exact count.
    now = utcnow()
    db.session.execute(
        insert(WebhookEvent),
        [
            {
                "webhook_id": f"capped-{n}",
                "source": "webhook",
                "type": "payment",
                "resource_id": str(n),
                "status": EventStatus.FAILED,
                "received_at": now,
                "updated_at": now,
            }
            for n in range(COUNT_CAP + 1)
        ],
    )
    db.session.commit()
    add_event(status=EventStatus.SUCCESS)

    failed = client.get("/api/webhook-events?status=failed&limit=1", headers=api_headers())
    assert failed.json["total"] == COUNT_CAP and failed.json["total_exact"] is False
    succeeded = client.get("/api/webhook-events?status=success", headers=api_headers())
    assert succeeded.json["total"] == 1 and succeeded.json["total_exact"] is True


def test_cursor_pagination_walks_every_event_once(app, client):
    # Three share one received_at: the id breaks the tie.
    created = [add_event(received_at=NOW - timedelta(seconds=n // 3)) for n in range(8)]
    newest_first = [
        e.id for e in sorted(created, key=lambda e: (e.received_at, e.id), reverse=True)
    ]
    seen, cursor = [], None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(f"/api/webhook-events?{query}", headers=api_headers())
        seen.append(event_ids(response))
        assert response.json["total"] == 8 and response.json["total_exact"] is True
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    ascending = client.get("/api/webhook-events?order=asc&limit=4", headers=api_headers())
    assert event_ids(ascending) == newest_first[::-1][:4]


def test_limit_is_capped(app, client):
    for _ in range(3):
        add_event()
    response = client.get("/api/webhook-events?limit=100000", headers=api_headers())
    assert len(event_ids(response)) == 3


# -- one event ----------------------------------------------------------------------


def test_event_detail_has_attempts_payload_headers_and_jobs(app, client, sandbox):
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=503, times=1)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    drain(app)
    detail = client.get(f"/api/webhook-events/{event_id}", headers=api_headers())
    assert detail.status_code == 200
    data = detail.json
    assert data["status"] == "success" and data["payment_id"] == str(payment["id"])
    assert [a["outcome"] for a in data["attempt_log"]] == ["retry", "success"]
    assert "503" in data["attempt_log"][0]["error"]
    assert "Traceback" in data["attempt_log"][0]["traceback"]
    assert data["attempt_log"][1]["traceback"] is None
    assert data["payload"]["data"]["id"] == str(payment["id"])
    assert "x-signature" in data["headers"] and data["query"]["type"] == "payment"
    assert [job["id"] for job in data["rq"]["jobs"]] == [job_id(event_id, 1), job_id(event_id, 2)]
    assert {job["status"] for job in data["rq"]["jobs"]} == {"finished"}


@pytest.mark.parametrize("event_id", ["999999", str(2**70)])
def test_unknown_event_is_404_json(client, event_id):
    response = client.get(f"/api/webhook-events/{event_id}", headers=api_headers())
    assert response.status_code == 404 and "does not exist" in response.json["error"]
    retry = client.post(f"/api/webhook-events/{event_id}/retry", headers=api_headers())
    assert retry.status_code == 404 and retry.json["error"]


# -- retries ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_retry_one_event(app, client, sandbox):
    failed, other = dead_letter(app, client, sandbox, 2)
    response = client.post(f"/api/webhook-events/{failed}/retry", headers=api_headers())
    assert response.status_code == 200
    assert response.json["requeued"] == 1 and response.json["queued"] is True
    assert response.json["event"]["status"] == "pending"
    assert get_queue(app).job_ids == [job_id(failed, 2)]
    assert statuses() == {failed: "pending", other: "failed"}
    drain(app)
    assert statuses() == {failed: "success", other: "failed"}

    refused = client.post(f"/api/webhook-events/{failed}/retry", headers=api_headers())
    assert refused.status_code == 409 and "already succeeded" in refused.json["error"]
    assert get_queue(app).count == 0
    forced = client.post(
        f"/api/webhook-events/{failed}/retry", json={"force": True}, headers=api_headers()
    )
    assert forced.status_code == 200 and statuses()[failed] == "pending"
    bad = client.post(
        f"/api/webhook-events/{other}/retry", json={"force": "perhaps"}, headers=api_headers()
    )
    assert bad.status_code == 400 and statuses()[other] == "failed"


@pytest.mark.timeout(60)
def test_bulk_retry_requeues_exactly_the_matching_failed_events_which_then_run(
    app, client, sandbox
):
    failed = dead_letter(app, client, sandbox, 5)
    older = add_event(status=EventStatus.FAILED, received_at=NOW - timedelta(days=30)).id
    ok = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
    run_worker(app)

    dry = client.post(
        "/api/webhook-events/retry", json={"since": "1d", "dry_run": True}, headers=api_headers()
    )
    assert dry.json["matched"] == 5 and dry.json["requeued"] == 0 and dry.json["dry_run"]
    assert get_queue(app).count == 0 and set(statuses().values()) == {"failed", "success"}

    response = client.post("/api/webhook-events/retry", json={"since": "1d"}, headers=api_headers())
    assert response.status_code == 200
    assert response.json["requeued"] == 5 and sorted(response.json["requeued_ids"]) == failed
    assert sorted(get_queue(app).job_ids) == sorted(job_id(event_id, 2) for event_id in failed)
    drain(app)
    assert statuses() == {**dict.fromkeys(failed, "success"), older: "failed", ok: "success"}


def test_bulk_retry_limit_and_bad_bodies(app, client):
    for _ in range(3):
        add_event(status=EventStatus.FAILED)
    first = client.post("/api/webhook-events/retry", json={"limit": 2}, headers=api_headers())
    assert first.json["requeued"] == 2 and first.json["more"] is True
    rest = client.post("/api/webhook-events/retry", headers=api_headers())
    assert rest.json["requeued"] == 1 and rest.json["more"] is False
    assert get_queue(app).count == 3

    for body in ('["status"]', "not json", '{"status": 5}', '{"since": "soon"}'):
        response = client.post(
            "/api/webhook-events/retry",
            data=body,
            content_type="application/json",
            headers=api_headers(),
        )
        assert response.status_code == 400 and response.json["error"]


# -- payments and stats ----------------------------------------------------------------


def test_payments_filters_pages_and_detail(app, client, sandbox):
    payment = sandbox.state.add_payment(status="rejected", payer={"email": "zoe@shop.test"})
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    run_worker(app)
    for n in range(3):
        add_payment(8000 + n, status="approved")

    def listed(query: str) -> list[str]:
        response = client.get(f"/api/payments?{query}", headers=api_headers())
        assert response.status_code == 200
        return [p["mp_payment_id"] for p in response.json["payments"]]

    assert listed("status=rejected") == [str(payment["id"])]
    assert listed("q=zoe@") == [str(payment["id"])]
    assert len(listed("status=approved")) == 3
    page = client.get("/api/payments?limit=2", headers=api_headers()).json
    rest = client.get(f"/api/payments?cursor={page['next_cursor']}", headers=api_headers()).json
    everything = [p["mp_payment_id"] for p in page["payments"] + rest["payments"]]
    assert len(everything) == len(set(everything)) == 4 and rest["next_cursor"] is None
    assert client.get("/api/payments?status=NOPE!", headers=api_headers()).status_code == 400

    detail = client.get(f"/api/payments/{payment['id']}", headers=api_headers())
    assert detail.status_code == 200
    assert detail.json["status"] == "rejected" and detail.json["payer_email"] == "zoe@shop.test"
    assert detail.json["tags_applied"] == ["mp-payment-rejected"] and detail.json["ghl_contact_id"]
    assert [e["id"] for e in detail.json["events"]] == [event_id]
    missing = client.get("/api/payments/424242", headers=api_headers())
    assert missing.status_code == 404 and missing.json["error"]


def test_stats(app, client):
    add_event(status=EventStatus.SUCCESS, latency=3.0)
    add_event(status=EventStatus.FAILED)
    add_event(status=EventStatus.PENDING)
    data = client.get("/api/stats?hours=6", headers=api_headers()).json
    assert data["events"] == {
        "pending": 1,
        "processing": 0,
        "success": 1,
        "failed": 1,
        "ignored": 0,
    }
    assert data["success_rate"] == 0.5 and data["window_hours"] == 6
    assert data["latency"]["p50"] == 3.0 and data["latency"]["sample"] == 1
    assert data["throughput"]["total"] == 3 and data["queue"]["error"] is None
    assert data["oldest_pending"]["age_seconds"] is not None
    for bad in ("0", "x", "-1"):
        response = client.get(f"/api/stats?hours={bad}", headers=api_headers())
        assert response.status_code == 400 and "hours" in response.json["error"]
