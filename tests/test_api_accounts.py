"""The API and accounts: `/api/accounts` (global token), account tokens that see one account
only (lists, details, retries, stats), `?account=` narrowing, global-only operations."""

from __future__ import annotations

import logging

import pytest
from account_rows import SECRET_MARK, SHARED_IDS, make_account, post_to_account, secrets_of, seed
from factories import add_event

from webhooks_app import account_ops, secret_box
from webhooks_app.accounts import DEFAULT_SLUG
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, ProcessingPause, WebhookEvent
from webhooks_app.queueing import get_redis

from conftest import api_headers, make_app, statuses

pytestmark = pytest.mark.timeout(60)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def no_secret(response) -> None:
    """Nothing the tests gave as a secret is anywhere in the answer."""
    assert SECRET_MARK not in response.get_data(as_text=True)


def test_accounts_through_the_api_never_answer_a_secret(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"slug": "acme", "name": "Acme", "ghl_location_id": "loc-acme", **secrets_of("acme")}
    created = client.post("/api/accounts", json=body, headers=api_headers())
    assert created.status_code == 201, created.json
    no_secret(created)
    assert created.json["webhook_path"] == "/webhooks/mp/acme"
    assert created.json["mp_webhook_secret_set"] and created.json["ghl_api_token_set"]
    assert created.json["api_token_set"] is False

    again = client.post("/api/accounts", json=body, headers=api_headers())
    assert again.status_code == 400 and "exists already" in again.json["error"]
    no_secret(again)
    for bad, message in [
        ({**body, "slug": "Not A Slug"}, "slug"),
        ({**body, "slug": "other", "ghl_api_token": None}, "ghl_api_token"),
        ({**body, "slug": "other", "name": 7}, "name"),
        ({**body, "slug": "other", "mp_access_token": f"{SECRET_MARK}\x00"}, "control"),
        ({**body, "slug": "other", "tag_mode": "sideways"}, "GHL_TAG_MODE"),
        ({**body, "slug": "other", "surprise": 1}, "surprise"),
        ({"name": "no slug"}, "slug"),
    ]:
        refused = client.post("/api/accounts", json=bad, headers=api_headers())
        assert refused.status_code == 400, (bad, refused.json)
        assert message in refused.json["error"]
        no_secret(refused)

    listed = client.get("/api/accounts", headers=api_headers())
    assert [a["slug"] for a in listed.json["accounts"]] == [DEFAULT_SLUG, "acme"]
    no_secret(listed)
    shown = client.get("/api/accounts/acme", headers=api_headers())
    assert shown.json["name"] == "Acme"
    no_secret(shown)
    assert client.get("/api/accounts/nope", headers=api_headers()).status_code == 404

    edited = client.patch(
        "/api/accounts/acme",
        json={"name": "Acme Corp", "retention_days": 30, "enabled": False, "ghl_api_token": ""},
        headers=api_headers(),
    )
    assert edited.status_code == 200, edited.json
    assert (edited.json["name"], edited.json["enabled"]) == ("Acme Corp", False)
    assert edited.json["retention_days"] == 30 and edited.json["ghl_api_token_set"]
    no_secret(edited)
    cleared = client.patch(
        "/api/accounts/acme", json={"ghl_location_id": None}, headers=api_headers()
    )
    assert cleared.status_code == 400 and "ghl_location_id" in cleared.json["error"]

    deleted = client.delete("/api/accounts/acme", headers=api_headers())
    assert deleted.json["deleted"] == "acme"
    assert client.get("/api/accounts/acme", headers=api_headers()).status_code == 404
    default = client.delete(f"/api/accounts/{DEFAULT_SLUG}", headers=api_headers())
    assert default.status_code == 400 and "cannot be deleted" in default.json["error"]
    assert "(acme) created" in caplog.text
    assert SECRET_MARK not in caplog.text  # nor in a log


def test_rotating_a_webhook_secret_through_the_api(app, client):
    account = make_account("acme")
    old = secrets_of("acme")["mp_webhook_secret"]
    rotated = client.post(
        "/api/accounts/acme/rotate-secret", json={"secret": "brand-new"}, headers=api_headers()
    )
    assert rotated.status_code == 200
    assert "brand-new" not in rotated.get_data(as_text=True)
    db.session.refresh(account)
    assert secret_box.decrypt(account.mp_webhook_secret_encrypted) == f"brand-new,{old}"
    assert post_to_account(client, "acme", "1").status_code == 200  # the old one, still

    finished = client.post(
        "/api/accounts/acme/rotate-secret", json={"finish": True}, headers=api_headers()
    )
    assert finished.status_code == 200
    db.session.refresh(account)
    assert secret_box.decrypt(account.mp_webhook_secret_encrypted) == "brand-new"
    assert post_to_account(client, "acme", "2").status_code == 401  # the old one, no longer
    empty = client.post("/api/accounts/acme/rotate-secret", json={}, headers=api_headers())
    assert empty.status_code == 400


def test_an_account_token_is_issued_once_and_revoked(app, client):
    make_account("acme")
    issued = client.post("/api/accounts/acme/token", headers=api_headers())
    token = issued.json["token"]
    assert token.startswith("acct_acme_") and issued.json["account"]["api_token_set"]
    assert token not in client.get("/api/accounts/acme", headers=api_headers()).get_data(
        as_text=True
    )
    assert client.get("/api/webhook-events", headers=bearer(token)).status_code == 200

    renewed = client.post("/api/accounts/acme/token", headers=api_headers()).json["token"]
    assert client.get("/api/webhook-events", headers=bearer(token)).status_code == 401
    client.patch("/api/accounts/acme", json={"enabled": False}, headers=api_headers())
    disabled = client.get("/api/webhook-events", headers=bearer(renewed))
    assert disabled.status_code == 403 and "disabled" in disabled.json["error"]
    client.patch("/api/accounts/acme", json={"enabled": True}, headers=api_headers())
    assert client.get("/api/webhook-events", headers=bearer(renewed)).status_code == 200
    client.delete("/api/accounts/acme/token", headers=api_headers())
    assert client.get("/api/webhook-events", headers=bearer(renewed)).status_code == 401


@pytest.fixture
def two_accounts(app):
    """acme (with its token) and globex, rows of every kind each; globex also has an order,
    chargeback, subscription and alert no one else's ids match."""
    acme = seed(make_account("acme"))
    globex = seed(make_account("globex"))
    globex_only = seed(account_ops.find_account("globex"), only="g")
    token = account_ops.issue_api_token(acme.account)
    return acme, globex, globex_only, token


def test_an_account_token_lists_its_account_only(client, two_accounts):
    acme, globex, _, token = two_accounts
    events = client.get("/api/webhook-events", headers=bearer(token)).json
    assert sorted(e["id"] for e in events["events"]) == sorted(acme.events.values())
    assert events["total"] == 3
    failed = client.get("/api/webhook-events?status=failed", headers=bearer(token)).json
    assert [e["id"] for e in failed["events"]] == [acme.events[EventStatus.FAILED]]

    payments = client.get("/api/payments", headers=bearer(token)).json["payments"]
    assert [p["payer_email"] for p in payments] == ["buyer@acme.example"]
    for path, key, count in [
        ("/api/chargebacks", "chargebacks", 1),
        ("/api/alerts", "alerts", 1),
        ("/api/subscriptions", "subscriptions", 1),
    ]:
        rows = client.get(path, headers=bearer(token)).json[key]
        assert len(rows) == count, (path, rows)
        assert not any(str(row).count("-g") for row in rows)
    subscription = client.get("/api/subscriptions", headers=bearer(token)).json
    assert subscription["subscriptions"][0]["payer_email"] == "sub@acme.example"

    stats = client.get("/api/stats", headers=bearer(token)).json
    assert stats["total_events"] == 3 and stats["payments"] == 1
    everything = client.get("/api/stats", headers=api_headers()).json
    assert everything["total_events"] == 9 and everything["payments"] == 3

    assert client.get("/api/webhook-events?account=acme", headers=bearer(token)).status_code == 200
    for slug in ("globex", "no-such-account"):
        other = client.get(f"/api/webhook-events?account={slug}", headers=bearer(token))
        assert other.status_code == 403 and "acme" in other.json["error"]
        assert client.get(f"/api/payments?account={slug}", headers=bearer(token)).status_code == 403


def test_another_accounts_rows_are_404_as_missing_ones(client, two_accounts):
    acme, globex, _, token = two_accounts
    theirs = globex.events[EventStatus.FAILED]
    assert client.get(f"/api/webhook-events/{theirs}", headers=api_headers()).status_code == 200
    for event_id in (theirs, 987654321):
        response = client.get(f"/api/webhook-events/{event_id}", headers=bearer(token))
        assert response.status_code == 404
        assert response.json == {"error": f"event {event_id} does not exist"}
    mine = client.get(f"/api/webhook-events/{acme.events['failed']}", headers=bearer(token))
    assert mine.status_code == 200

    # The shared MercadoPago ids answer the caller's own row.
    payment = client.get(f"/api/payments/{SHARED_IDS['payment']}", headers=bearer(token)).json
    assert payment["payer_email"] == "buyer@acme.example"
    assert {e["id"] for e in payment["events"]} == set(acme.events.values())
    for path in (
        f"/api/merchant-orders/{SHARED_IDS['order']}",
        f"/api/subscriptions/{SHARED_IDS['subscription']}",
    ):
        assert client.get(path, headers=bearer(token)).status_code == 200
    # globex's own ids: there for the global token, missing for acme's.
    for path in (
        f"/api/merchant-orders/{SHARED_IDS['order']}-g",
        f"/api/subscriptions/{SHARED_IDS['subscription']}-g",
    ):
        assert client.get(path, headers=api_headers()).status_code == 200
        missing = client.get(path, headers=bearer(token))
        assert missing.status_code == 404 and "does not exist" in missing.json["error"]
    for path, key in [
        (f"/api/chargebacks?payment_id={SHARED_IDS['payment']}", "chargebacks"),
        (f"/api/alerts?payment_id={SHARED_IDS['payment']}", "alerts"),
    ]:
        assert len(client.get(path, headers=api_headers()).json[key]) == 3
        assert len(client.get(path, headers=bearer(token)).json[key]) == 1


def test_an_account_token_cannot_retry_another_accounts_events(app, client, two_accounts):
    acme, globex, globex_only, token = two_accounts
    theirs = [globex.events[EventStatus.FAILED], globex_only.events[EventStatus.FAILED]]
    before = {
        event.id: (event.status, event.updated_at, event.attempts_at_replay)
        for event in db.session.query(WebhookEvent).filter(WebhookEvent.id.in_(theirs))
    }
    for event_id in theirs:
        refused = client.post(
            f"/api/webhook-events/{event_id}/retry", json={"force": True}, headers=bearer(token)
        )
        assert refused.status_code == 404
        assert refused.json == {"error": f"event {event_id} does not exist"}
    body = {"account": "globex", "status": "failed"}
    other = client.post("/api/webhook-events/retry", json=body, headers=bearer(token))
    assert other.status_code == 403

    bulk = client.post("/api/webhook-events/retry", json={}, headers=bearer(token)).json
    assert bulk["requeued_ids"] == [acme.events[EventStatus.FAILED]]
    db.session.expire_all()
    after = {
        event.id: (event.status, event.updated_at, event.attempts_at_replay)
        for event in db.session.query(WebhookEvent).filter(WebhookEvent.id.in_(theirs))
    }
    assert after == before
    redis = get_redis(app)
    assert redis.keys(f"rq:job:event-{acme.events['failed']}-*")
    for event_id in theirs:
        assert redis.keys(f"rq:job:event-{event_id}-*") == []

    mine = client.post(
        f"/api/webhook-events/{acme.events[EventStatus.SUCCESS]}/retry",
        json={"force": True},
        headers=bearer(token),
    )
    assert mine.status_code == 200 and mine.json["requeued"] == 1


def test_the_global_token_narrows_with_account(client, two_accounts):
    acme, globex, globex_only, _ = two_accounts
    everything = client.get("/api/webhook-events", headers=api_headers()).json
    assert everything["total"] == 9
    narrowed = client.get("/api/webhook-events?account=globex", headers=api_headers()).json
    expected = set(globex.events.values()) | set(globex_only.events.values())
    assert {e["id"] for e in narrowed["events"]} == expected
    unknown = client.get("/api/webhook-events?account=nope", headers=api_headers())
    assert unknown.status_code == 400 and "account" in unknown.json["error"]
    payment = client.get("/api/payments/555?account=globex", headers=api_headers()).json
    assert payment["payer_email"] == "buyer@globex.example"
    subscriptions = client.get("/api/subscriptions?account=globex", headers=api_headers()).json
    assert len(subscriptions["subscriptions"]) == 2
    stats = client.get("/api/stats?account=acme", headers=api_headers()).json
    assert stats["total_events"] == 3 and stats["queue"]["scheduled"] is None

    dry = client.post(
        "/api/webhook-events/retry",
        json={"account": "globex", "dry_run": True},
        headers=api_headers(),
    ).json
    assert dry["matched"] == 2 and dry["requeued"] == 0
    wrong_type = client.post(
        "/api/webhook-events/retry", json={"account": 3}, headers=api_headers()
    )
    assert wrong_type.status_code == 400


def test_global_operations_are_refused_to_an_account_token(client, two_accounts):
    *_, token = two_accounts
    calls = [
        ("get", "/api/processing", None),
        ("post", "/api/processing/pause", {"stage": "all", "reason": "mine"}),
        ("post", "/api/processing/resume", {}),
        ("get", "/api/accounts", None),
        ("post", "/api/accounts", {"slug": "mine", "name": "Mine"}),
        ("get", "/api/accounts/acme", None),
        ("patch", "/api/accounts/acme", {"enabled": False}),
        ("post", "/api/accounts/acme/token", None),
        ("post", "/api/accounts/globex/rotate-secret", {"secret": "x"}),
        ("delete", "/api/accounts/globex", None),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=bearer(token))
        assert response.status_code == 403, (method, path, response.json)
        assert "global API_TOKEN" in response.json["error"]
    assert db.session.query(ProcessingPause).count() == 0
    assert [a.slug for a in account_ops.list_accounts()] == [DEFAULT_SLUG, "acme", "globex"]
    assert all(a.enabled for a in account_ops.list_accounts())


def test_notifications_to_an_accounts_url_are_its_own(client, two_accounts):
    acme, globex, _, token = two_accounts
    received = post_to_account(client, "globex", "4242")
    assert received.status_code == 200
    event_id = received.json["event_id"]
    assert db.session.get(WebhookEvent, event_id).account_id == globex.account.id
    assert client.get(f"/api/webhook-events/{event_id}", headers=bearer(token)).status_code == 404
    narrowed = client.get("/api/webhook-events?q=4242", headers=bearer(token)).json
    assert narrowed["total"] == 0
    assert statuses()[event_id] == EventStatus.PENDING


def test_account_tokens_work_without_a_global_token(sandbox, app):
    account = make_account("acme")
    add_event(account_id=account.id)
    token = account_ops.issue_api_token(account)
    only_accounts = make_app(sandbox, API_TOKEN=None).test_client()
    assert only_accounts.get("/api/webhook-events", headers=bearer(token)).json["total"] == 1
    assert only_accounts.get("/api/webhook-events", headers=api_headers()).status_code == 503
