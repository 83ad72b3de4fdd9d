"""The admin's account pages (create, edit, disable, rotate, delete) and every listing
filtered by account: secrets never shown, one account's events never touched through
another's filter."""

from __future__ import annotations

import base64
import logging
import re
import uuid

import pytest
from factories import add_event, add_payment

from webhooks_app import accounts
from webhooks_app.account_ops import create_account, delete_account, find_account, list_accounts
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, MpAlert, Payment, Subscription, WebhookEvent
from webhooks_app.resources import Chargeback, MerchantOrder
from webhooks_app.signatures import sign

from conftest import make_app, statuses

pytestmark = pytest.mark.timeout(60)

USERNAME, PASSWORD = "operator", "correct horse battery staple"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}

# Recognisable values: any of them in a page or a log line is a leak.
SECRETS = {
    "mp_access_token": "APP_USR-b-access-4f9e2c7d1a",
    "mp_webhook_secret": "whsec-b-8c1d5e9f3b",
    "ghl_api_token": "pit-b-ghl-2a6b0e4c8d",
}
NEW_SECRETS = {
    "mp_access_token": "APP_USR-b-access-NEW-77e1",
    "mp_webhook_secret": "whsec-b-NEW-3d3d",
    "ghl_api_token": "pit-b-ghl-NEW-9a9a",
}
ALL_SECRETS = [*SECRETS.values(), *NEW_SECRETS.values()]


def _delete_other_accounts() -> None:
    db.session.rollback()
    for account in list_accounts():
        if not account.is_default:
            delete_account(account)


@pytest.fixture
def app(app, sandbox):
    """The conftest app with admin credentials; only the default account, before and after
    (the conftest empties the data tables, not the accounts)."""
    admin_app = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    with admin_app.app_context():
        _delete_other_accounts()
        yield admin_app
        _delete_other_accounts()
        db.session.remove()
        db.engine.dispose()  # PostgreSQL's connections are shared with parallel runs


def token(client, path: str = "/admin/accounts/default") -> str:
    page = client.get(path, headers=AUTH)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"{path} has no CSRF token"
    return match.group(1)


def second_account(slug: str = "shop-b", **values):
    """Another account, made as the API and the CLI make one."""
    fields = {"name": f"Shop {slug}", **SECRETS, "ghl_location_id": f"loc-{slug}", **values}
    return create_account(slug, **fields)


def form_for(slug: str, **overrides) -> dict[str, str]:
    return {
        "slug": slug,
        "name": "Shop B",
        **SECRETS,
        "ghl_location_id": "loc-b",
        "status_tags": "approved=paid,rejected=failed",
        "tag_mode": "accumulate",
        "custom_fields": "",
        "retention_days": "30",
        **overrides,
    }


def assert_no_secret(text: str, where: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text, f"{where} shows a secret"


def listed_events(client, query: str) -> set[int]:
    page = client.get(f"/admin/events?{query}", headers=AUTH)
    assert page.status_code == 200, page.text
    return {int(n) for n in re.findall(r'name="ids" value="(\d+)"', page.text)}


# -- the account pages ------------------------------------------------------------------


def test_create_an_account_through_the_form(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    new_page = client.get("/admin/accounts/new", headers=AUTH)
    assert new_page.status_code == 200 and 'type="password" name="mp_access_token"' in new_page.text
    form = {**form_for("shop-b"), "csrf_token": token(client, "/admin/accounts/new")}
    created = client.post("/admin/accounts/new", data=form, headers=AUTH)
    assert created.status_code == 302 and created.headers["Location"] == "/admin/accounts/shop-b"

    detail = client.get("/admin/accounts/shop-b", headers=AUTH)
    assert "Account shop-b created" in detail.text
    assert "http://localhost/webhooks/mp/shop-b" in detail.text
    assert "loc-b" in detail.text and "approved=paid,rejected=failed" in detail.text
    stored = accounts.by_slug("shop-b")
    assert stored.config["MP_ACCESS_TOKEN"] == SECRETS["mp_access_token"]
    assert stored.config["GHL_STATUS_TAGS"]["rejected"] == "failed"
    assert stored.config["GHL_TAG_MODE"] == "accumulate" and stored.config["RETENTION_DAYS"] == 30
    for path in ("/admin/accounts", "/admin/accounts/shop-b", "/admin/accounts/new"):
        assert_no_secret(client.get(path, headers=AUTH).text, path)
    assert "account" in caplog.text and "created" in caplog.text  # the log is captured…
    assert_no_secret(caplog.text, "the log")  # …and holds no secret


def test_a_refused_form_is_shown_again_without_its_secrets(app, client):
    csrf = token(client, "/admin/accounts/new")
    for bad, message in (
        ({"slug": "Bad Slug"}, "a slug is 1-64 lower-case letters"),
        ({"slug": "default"}, "default account"),
        ({"slug": "new"}, "reserved"),
        ({"retention_days": "soon"}, "retention_days is a number"),
        ({"tag_mode": "sometimes"}, "GHL_TAG_MODE must be one of"),
        ({"ghl_api_token": ""}, "a new account needs: ghl_api_token"),
    ):
        page = client.post(
            "/admin/accounts/new",
            data={**form_for("shop-b"), **bad, "csrf_token": csrf},
            headers=AUTH,
        )
        assert page.status_code == 400 and message in page.text, bad
        assert 'value="Shop B"' in page.text  # what was typed is kept, but for the secrets
        assert_no_secret(page.text, f"the refused form {bad}")
    assert find_account("shop-b") is None
    second_account("shop-c")
    taken = client.post(
        "/admin/accounts/new", data={**form_for("shop-c"), "csrf_token": csrf}, headers=AUTH
    )
    assert taken.status_code == 400 and "exists already" in taken.text
    assert_no_secret(taken.text, "the refused form")


def test_edit_keeps_a_secret_left_empty_and_never_shows_one(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    second_account()
    page = client.get("/admin/accounts/shop-b", headers=AUTH)
    assert page.text.count("leave empty to keep") == 3
    assert 'name="ghl_location_id" value="loc-shop-b"' in page.text
    csrf = token(client, "/admin/accounts/shop-b")
    edit = {
        "name": "Shop B renamed",
        "ghl_location_id": "loc-b2",
        "status_tags": "approved=won",
        "tag_mode": "",
        "custom_fields": "",
        "retention_days": "",
        "mp_access_token": "",
        "mp_webhook_secret": "",
        "ghl_api_token": NEW_SECRETS["ghl_api_token"],
    }
    saved = client.post("/admin/accounts/shop-b", data={**edit, "csrf_token": csrf}, headers=AUTH)
    assert saved.status_code == 302
    settings = accounts.by_slug("shop-b")
    assert settings.name == "Shop B renamed"
    assert settings.config["MP_ACCESS_TOKEN"] == SECRETS["mp_access_token"]  # kept
    assert settings.config["MP_WEBHOOK_SECRET"] == SECRETS["mp_webhook_secret"]
    assert settings.config["GHL_API_TOKEN"] == NEW_SECRETS["ghl_api_token"]  # replaced
    assert settings.config["GHL_LOCATION_ID"] == "loc-b2"
    assert settings.config["GHL_STATUS_TAGS"]["approved"] == "won"
    shown = client.get("/admin/accounts/shop-b", headers=AUTH).text
    assert "Account shop-b saved (new ghl_api_token)" in shown
    assert_no_secret(shown, "the saved account")

    refused = client.post(
        "/admin/accounts/shop-b",
        data={
            **edit,
            "ghl_location_id": "",
            "mp_access_token": NEW_SECRETS["mp_access_token"],
            "csrf_token": csrf,
        },
        headers=AUTH,
    )
    assert refused.status_code == 400 and "an account needs: ghl_location_id" in refused.text
    assert_no_secret(refused.text, "the refused edit")
    assert accounts.by_slug("shop-b").config["MP_ACCESS_TOKEN"] == SECRETS["mp_access_token"]
    assert client.get("/admin/accounts/nope", headers=AUTH).status_code == 404
    assert_no_secret(caplog.text, "the log")


def test_disable_and_enable(app, client):
    second_account()
    csrf = token(client, "/admin/accounts/shop-b")
    disabled = client.post(
        "/admin/accounts/shop-b/disable",
        data={"csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Account shop-b disabled" in disabled.text and "disabled</span>" in disabled.text
    assert accounts.by_slug("shop-b").enabled is False
    assert "<strong>disabled</strong>" in client.get("/admin/accounts", headers=AUTH).text
    request_id = str(uuid.uuid4())
    signed = {
        "x-request-id": request_id,
        "x-signature": sign(SECRETS["mp_webhook_secret"], "123", request_id),
    }
    webhook = client.post(
        "/webhooks/mp/shop-b?data.id=123&type=payment",
        json={"type": "payment", "data": {"id": "123"}},
        headers=signed,
    )
    assert webhook.status_code == 404
    enabled = client.post(
        "/admin/accounts/shop-b/enable",
        data={"csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Account shop-b enabled" in enabled.text
    assert accounts.by_slug("shop-b").enabled is True


def test_rotate_the_webhook_secret_then_finish(app, client):
    second_account()
    csrf = token(client, "/admin/accounts/shop-b")
    new = NEW_SECRETS["mp_webhook_secret"]
    rotated = client.post(
        "/admin/accounts/shop-b/rotate-secret",
        data={"new_secret": new, "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "new webhook secret saved" in rotated.text and "rotation in progress" in rotated.text
    assert_no_secret(rotated.text, "the rotated account")
    secret = f"{new},{SECRETS['mp_webhook_secret']}"
    assert accounts.by_slug("shop-b").config["MP_WEBHOOK_SECRET"] == secret
    assert "(rotating)" in client.get("/admin/accounts", headers=AUTH).text

    refused = client.post(
        "/admin/accounts/shop-b/rotate-secret",
        data={"new_secret": "", "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Not rotated: a webhook secret is non-empty" in refused.text
    finished = client.post(
        "/admin/accounts/shop-b/finish-rotation",
        data={"csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "only the newest webhook secret is accepted" in finished.text
    assert "rotation in progress" not in finished.text
    assert accounts.by_slug("shop-b").config["MP_WEBHOOK_SECRET"] == new
    again = client.post(
        "/admin/accounts/shop-b/finish-rotation",
        data={"csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "no rotation in progress" in again.text
    # The default account's secret is the environment's: rotated there, not here.
    default = client.post(
        "/admin/accounts/default/rotate-secret",
        data={"new_secret": new, "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Not rotated: the default account&#39;s secret is MP_WEBHOOK_SECRET" in default.text


def test_delete_needs_the_slug_and_removes_only_that_accounts_data(app, client):
    b = second_account()
    b_id = b.id
    mine = [add_event(status=EventStatus.FAILED, account_id=b_id).id for _ in range(2)]
    add_payment("555", account_id=b_id)
    theirs = add_event(status=EventStatus.FAILED).id
    add_payment("555")  # the same MercadoPago id in the default account
    csrf = token(client, "/admin/accounts/shop-b")

    wrong = client.post(
        "/admin/accounts/shop-b/delete",
        data={"confirm_slug": "shop", "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Not deleted: type the slug shop-b to confirm" in wrong.text
    assert find_account("shop-b") is not None
    deleted = client.post(
        "/admin/accounts/shop-b/delete",
        data={"confirm_slug": "shop-b", "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Account shop-b deleted (2 events, 1 payments)" in deleted.text
    assert 'href="/admin/accounts/shop-b"' not in deleted.text
    db.session.expire_all()
    assert find_account("shop-b") is None
    assert set(statuses()) == {theirs} and mine[0] not in statuses()
    assert [p.account_id for p in db.session.query(Payment)] == [accounts.DEFAULT_ACCOUNT_ID]


def test_the_default_account_cannot_be_deleted(app, client):
    page = client.get("/admin/accounts/default", headers=AUTH)
    assert "cannot be deleted" in page.text and "confirm_slug" not in page.text
    refused = client.post(
        "/admin/accounts/default/delete",
        data={"confirm_slug": "default", "csrf_token": token(client)},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Not deleted: the default account cannot be deleted" in refused.text
    assert find_account("default") is not None


@pytest.mark.parametrize(
    "path, form",
    [
        ("/admin/accounts/new", form_for("shop-x")),
        ("/admin/accounts/shop-b", {"name": "hijacked"}),
        ("/admin/accounts/shop-b/disable", {}),
        ("/admin/accounts/shop-b/rotate-secret", {"new_secret": "attacker"}),
        ("/admin/accounts/shop-b/delete", {"confirm_slug": "shop-b"}),
    ],
)
def test_account_forms_need_a_csrf_token(app, client, path, form):
    second_account()
    token(client)  # a session with a token exists: the form still has to carry it
    for data in (form, {**form, "csrf_token": "forged"}):
        refused = client.post(path, data=data, headers=AUTH)
        assert refused.status_code == 400 and "The form could not be accepted" in refused.text
    settings = accounts.by_slug("shop-b")
    assert settings.name == "Shop shop-b" and settings.enabled
    assert settings.config["MP_WEBHOOK_SECRET"] == SECRETS["mp_webhook_secret"]
    assert find_account("shop-x") is None


def test_account_pages_need_the_admin_login(app, client):
    for path in ("/admin/accounts", "/admin/accounts/new", "/admin/accounts/default"):
        assert client.get(path).status_code == 401


def test_the_webhook_url_shown_is_the_accounts(app, client):
    second_account()
    listing = client.get("/admin/accounts", headers=AUTH).text
    assert "<code>http://localhost/webhooks/mp</code>" in listing
    assert "<code>http://localhost/webhooks/mp/shop-b</code>" in listing
    elsewhere = client.get(
        "/admin/accounts/shop-b", headers=AUTH, base_url="https://hooks.example.com"
    ).text
    assert "https://hooks.example.com/webhooks/mp/shop-b" in elsewhere
    assert "Accounts</a>" in listing and 'href="/admin/accounts" class="active"' in listing


# -- every listing by account -----------------------------------------------------------


def test_events_filtered_by_account(app, client):
    b = second_account()
    mine = {add_event(status=EventStatus.FAILED, account_id=b.id).id for _ in range(3)}
    theirs = {add_event(status=EventStatus.FAILED).id for _ in range(2)}
    assert listed_events(client, "") == mine | theirs
    assert listed_events(client, "account=shop-b") == mine
    assert listed_events(client, "account=default&status=failed") == theirs
    page = client.get("/admin/events?account=shop-b&limit=1", headers=AUTH).text
    assert '<option value="shop-b" selected>shop-b</option>' in page
    assert 'href="/admin/accounts/shop-b">shop-b</a>' in page  # each row's account
    older = re.search(r'href="([^"]*after=[^"]*)"', page).group(1)
    assert "account=shop-b" in older  # the pages keep the filter
    assert listed_events(client, older.split("?", 1)[1].replace("&amp;", "&")) <= mine
    unknown = client.get("/admin/events?account=nobody", headers=AUTH)
    assert unknown.status_code == 400 and "no account has the slug" in unknown.text

    detail = client.get(f"/admin/events/{min(mine)}", headers=AUTH).text
    assert re.search(r'class="event-account"><a href="/admin/accounts/shop-b">shop-b</a>', detail)


def test_bulk_and_selected_retry_keep_to_the_filtered_account(app, client):
    b = second_account()
    mine = [add_event(status=EventStatus.FAILED, account_id=b.id).id for _ in range(2)]
    theirs = [add_event(status=EventStatus.FAILED).id for _ in range(2)]
    csrf = token(client, "/admin/events?account=shop-b")
    retried = client.post(
        "/admin/events/retry-failed",
        data={"account": "shop-b", "status": "failed", "csrf_token": csrf},
        headers=AUTH,
    )
    assert retried.status_code == 302
    assert retried.headers["Location"] == "/admin/events?account=shop-b&status=failed"
    now = statuses()
    assert all(now[event_id] == EventStatus.PENDING for event_id in mine)
    assert all(now[event_id] == EventStatus.FAILED for event_id in theirs)

    # Ids of another account's events, posted from shop-b's list, are not retried.
    forged = client.post(
        "/admin/events/retry-selected",
        data={"account": "shop-b", "ids": [str(i) for i in theirs], "csrf_token": csrf},
        headers=AUTH,
        follow_redirects=True,
    )
    assert "Re-queued 0 event(s); 2 not found" in forged.text
    assert all(statuses()[event_id] == EventStatus.FAILED for event_id in theirs)
    # Without an account filter the admin (every account's operator) retries any.
    client.post(
        "/admin/events/retry-selected",
        data={"ids": [str(theirs[0])], "csrf_token": csrf},
        headers=AUTH,
    )
    assert statuses()[theirs[0]] == EventStatus.PENDING


def test_payments_filtered_by_account_and_the_same_id_in_two_accounts(app, client):
    b = second_account()
    add_payment("9001", account_id=b.id, payer_email="b@shop.test")
    add_payment("9001", payer_email="default@shop.test")
    add_payment("9002")
    page = client.get("/admin/payments?account=shop-b", headers=AUTH).text
    assert "b@shop.test" in page and "default@shop.test" not in page and "9002" not in page
    assert 'href="/admin/payments/9001?account=shop-b"' in page  # opens b's, not default's
    everyone = client.get("/admin/payments", headers=AUTH).text
    assert 'href="/admin/payments/9001"' in everyone and "b@shop.test" in everyone
    assert "default@shop.test" in client.get("/admin/payments/9001", headers=AUTH).text
    b_page = client.get("/admin/payments/9001?account=shop-b", headers=AUTH).text
    assert "b@shop.test" in b_page and 'href="/admin/accounts/shop-b">shop-b</a>' in b_page
    assert client.get("/admin/payments/9002?account=shop-b", headers=AUTH).status_code == 404
    assert client.get("/admin/payments/9001?account=nobody", headers=AUTH).status_code == 404
    bad = client.get("/admin/payments?account=nobody", headers=AUTH)
    assert bad.status_code == 400 and "no account has the slug" in bad.text


def test_resources_filtered_by_account(app, client):
    b = second_account()
    for account_id, suffix in ((b.id, "b"), (accounts.DEFAULT_ACCOUNT_ID, "d")):
        db.session.add_all(
            [
                Subscription(
                    account_id=account_id, mp_preapproval_id=f"pre-{suffix}", status="authorized"
                ),
                Chargeback(
                    account_id=account_id,
                    mp_chargeback_id=f"cb-{suffix}",
                    mp_payment_id=f"pay-{suffix}",
                ),
                MpAlert(
                    account_id=account_id,
                    kind=MpAlert.CLAIM,
                    mp_resource_id=f"claim-{suffix}",
                    mp_payment_id=f"pay-{suffix}",
                ),
                MerchantOrder(
                    account_id=account_id,
                    mp_order_id="order-1",
                    status=f"st-{suffix}",
                    payment_ids=[],
                ),
            ]
        )
    db.session.commit()
    for path, b_marker, d_marker in (
        ("/admin/subscriptions", "pre-b", "pre-d"),
        ("/admin/chargebacks", "cb-b", "cb-d"),
        ("/admin/alerts", "claim-b", "claim-d"),
    ):
        both = client.get(path, headers=AUTH).text
        assert b_marker in both and d_marker in both, path
        only_b = client.get(f"{path}?account=shop-b", headers=AUTH)
        assert only_b.status_code == 200, path
        assert b_marker in only_b.text and d_marker not in only_b.text, path
        assert '<option value="shop-b" selected>' in only_b.text, path
        unknown = client.get(f"{path}?account=nobody", headers=AUTH)
        assert unknown.status_code == 400 and "no account has the slug" in unknown.text, path
    listing = client.get("/admin/subscriptions?account=shop-b&limit=1", headers=AUTH).text
    assert 'href="/admin/subscriptions/pre-b?account=shop-b"' in listing
    assert "account=shop-b" in re.search(r'href="(/admin/subscriptions\?[^"]*)">First', listing)[1]
    assert "shop-b" in client.get("/admin/subscriptions/pre-b?account=shop-b", headers=AUTH).text
    order_b = client.get("/admin/merchant-orders/order-1?account=shop-b", headers=AUTH).text
    assert "st-b" in order_b and "st-d" not in order_b
    assert "st-d" in client.get("/admin/merchant-orders/order-1", headers=AUTH).text


def test_the_event_page_of_another_accounts_event_says_whose_it_is(app, client):
    b = second_account()
    event = add_event(status=EventStatus.FAILED, account_id=b.id)
    page = client.get(f"/admin/events/{event.id}", headers=AUTH).text
    assert 'href="/admin/events?account=shop-b"' in page
    assert event.id not in listed_events(client, "account=default")
    assert db.session.get(WebhookEvent, event.id).account_id == b.id


def test_an_accounts_name_is_escaped(app, client):
    second_account(name="<script>alert(1)</script>")
    for path in ("/admin/accounts", "/admin/accounts/shop-b"):
        page = client.get(path, headers=AUTH).text
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page, path


def test_the_stats_page_shows_one_account(app, client):
    other = second_account()
    add_event(status=EventStatus.FAILED, account_id=other.id)
    add_event(status=EventStatus.FAILED, account_id=other.id)
    add_event(status=EventStatus.SUCCESS)

    page = client.get("/admin/stats?account=shop-b", headers=AUTH)
    everyone = client.get("/admin/stats", headers=AUTH)
    unknown = client.get("/admin/stats?account=nobody", headers=AUTH)

    assert page.status_code == 200 and "Stats: shop-b" in page.text
    assert re.search(r"Events \(all time\)</div><div class=\"card-value\">2<", page.text)
    assert re.search(r"Events \(all time\)</div><div class=\"card-value\">3<", everyone.text)
    assert '<option value="shop-b" selected' in page.text
    assert unknown.status_code == 400
