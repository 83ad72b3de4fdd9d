"""Accounts (issue 18): secrets encrypted at rest, settings, routing by slug, isolation of
the accounts' MercadoPago and GoHighLevel work, one queue per account served in turn."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from accounts_support import create_account, post_to, remove_accounts
from cryptography.fernet import Fernet
from rq import SimpleWorker
from sqlalchemy import text

from webhooks_app import accounts, secret_box
from webhooks_app.accounts import DEFAULT_ACCOUNT_ID, Account
from webhooks_app.config import ConfigError, ProductionConfig, TestingConfig
from webhooks_app.extensions import db
from webhooks_app.fair_worker import make_worker
from webhooks_app.models import EventStatus, Payment, WebhookEvent
from webhooks_app.queueing import account_queue_name, get_queue, get_redis, queue_names
from webhooks_app.secret_box import SecretUnreadable

from conftest import drain, events, run_worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _clean_accounts(app) -> Iterator[None]:
    remove_accounts()
    yield
    remove_accounts()


def key() -> str:
    return Fernet.generate_key().decode()


def raw_row(account_id: int) -> str:
    """Every column of the stored row, as the database hands it out, in one string."""
    with db.engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM accounts WHERE id = :id"), {"id": account_id}
        ).one()
    return " ".join(str(value) for value in row)


def register(sandbox, *tenants) -> None:
    """The tenants' tokens, as their MercadoPago applications and GoHighLevel locations."""
    for tenant in tenants:
        sandbox.state.register_mp_token(tenant.mp_token)
        sandbox.state.register_ghl_token(tenant.ghl_token, tenant.location)


# -- secrets at rest ---------------------------------------------------------------------


def test_secrets_are_encrypted_at_rest(app) -> None:
    tenant = create_account("shop-a")

    stored = raw_row(tenant.id)
    for secret in (tenant.mp_token, tenant.secret, tenant.ghl_token):
        assert secret not in stored
    account = db.session.get(Account, tenant.id)
    assert secret_box.decrypt(account.mp_access_token_encrypted) == tenant.mp_token
    settings = accounts.by_slug("shop-a")
    assert settings.config["MP_ACCESS_TOKEN"] == tenant.mp_token
    assert settings.webhook_secret == tenant.secret
    assert settings.config["GHL_API_TOKEN"] == tenant.ghl_token
    # Each encryption is fresh (Fernet's IV): equal secrets do not show as equal rows.
    assert secret_box.encrypt("same") != secret_box.encrypt("same")
    assert secret_box.encrypt(None) is None and secret_box.decrypt(None) is None


def test_key_rotation(app) -> None:
    k1, k2 = key(), key()
    app.config["ACCOUNT_SECRET_KEYS"] = k1
    tenant = create_account("shop-a")
    stored = db.session.get(Account, tenant.id).mp_access_token_encrypted

    app.config["ACCOUNT_SECRET_KEYS"] = f"{k2},{k1}"  # a new key first: the old one still reads
    assert accounts.by_slug("shop-a").config["MP_ACCESS_TOKEN"] == tenant.mp_token
    rotated = secret_box.reencrypt(stored)
    assert rotated != stored

    app.config["ACCOUNT_SECRET_KEYS"] = k2  # the old key dropped
    assert secret_box.decrypt(rotated) == tenant.mp_token
    with pytest.raises(SecretUnreadable):
        secret_box.decrypt(stored)
    with pytest.raises(SecretUnreadable):
        accounts.by_slug("shop-a")  # its row was not re-encrypted

    app.config["ACCOUNT_SECRET_KEYS"] = key()  # neither key
    with pytest.raises(SecretUnreadable):
        secret_box.decrypt(rotated)
    with pytest.raises(SecretUnreadable):
        secret_box.reencrypt(rotated)


def test_production_refuses_secrets_without_keys(app) -> None:
    assert ProductionConfig.ACCOUNT_DEVELOPMENT_KEY is False
    app.config.update(ACCOUNT_SECRET_KEYS=None, ACCOUNT_DEVELOPMENT_KEY=False)

    with pytest.raises(ConfigError, match="ACCOUNT_SECRET_KEYS"):
        secret_box.encrypt("token")
    app.config["ACCOUNT_SECRET_KEYS"] = "not a fernet key"
    with pytest.raises(ConfigError, match="Fernet"):
        secret_box.encrypt("token")


def test_to_dict_never_shows_a_secret(app) -> None:
    tenant = create_account("shop-a", status_tags="approved=paid")

    shown = db.session.get(Account, tenant.id).to_dict()

    text_shown = json.dumps(shown)
    for secret in (tenant.mp_token, tenant.secret, tenant.ghl_token):
        assert secret not in text_shown
    assert not any(name.endswith("_encrypted") for name in shown)
    assert shown["mp_access_token_set"] and shown["mp_webhook_secret_set"]
    assert shown["ghl_api_token_set"] and shown["webhook_path"] == "/webhooks/mp/shop-a"


# -- settings ------------------------------------------------------------------------------


def test_the_default_account_is_the_environment(app) -> None:
    default = accounts.default_account()

    assert (default.id, default.slug, default.enabled) == (DEFAULT_ACCOUNT_ID, "default", True)
    assert default.config["MP_ACCESS_TOKEN"] == TestingConfig.MP_ACCESS_TOKEN
    assert default.webhook_secret == TestingConfig.MP_WEBHOOK_SECRET
    assert default.config["GHL_API_TOKEN"] == TestingConfig.GHL_API_TOKEN
    assert default.config["GHL_LOCATION_ID"] == TestingConfig.GHL_LOCATION_ID
    assert account_queue_name(DEFAULT_ACCOUNT_ID) == app.config["RQ_QUEUE_NAME"]
    assert db.session.get(Account, DEFAULT_ACCOUNT_ID).to_dict()["webhook_path"] == "/webhooks/mp"


def test_another_account_never_borrows_the_environments_credentials(app) -> None:
    create_account("bare", with_secrets=False, status_tags="approved=paid")

    config = accounts.by_slug("bare").config

    for name in ("MP_ACCESS_TOKEN", "MP_WEBHOOK_SECRET", "GHL_API_TOKEN", "GHL_LOCATION_ID"):
        assert config[name] is None, name
    # Settings that are no credential do come from the environment, under its own.
    assert config["GHL_STATUS_TAGS"]["approved"] == "paid"
    assert config["GHL_STATUS_TAGS"]["rejected"] == app.config["GHL_STATUS_TAGS"]["rejected"]
    assert config["GHL_TAG_MODE"] == app.config["GHL_TAG_MODE"]


# -- routing -------------------------------------------------------------------------------


def test_a_notification_is_stored_as_its_accounts(app, client) -> None:
    tenant = create_account("shop-a")

    answer = post_to(client, "shop-a", 123, tenant.secret)

    assert answer.status_code == 200 and answer.json["status"] == "accepted"
    stored = events()
    assert [(e.id, e.account_id) for e in stored] == [(answer.json["event_id"], tenant.id)]


@pytest.mark.parametrize("slug", ["nobody", "UPPER", "..%2Fx", "a" * 65, "-x", "x-"])
def test_an_unknown_or_malformed_slug_is_404(app, client, slug: str) -> None:
    create_account("shop-a")

    answer = post_to(client, slug, 123, "webhook-secret-shop-a")

    assert answer.status_code == 404
    assert events() == []


def test_a_path_traversal_never_reaches_another_account(app, client) -> None:
    tenant = create_account("shop-a")

    answers = [
        client.post("/webhooks/mp/../x", json={}),
        client.post("/webhooks/mp/shop-a/..", json={}),
        post_to(client, "shop-a/extra", 1, tenant.secret),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert events() == []


def test_a_disabled_account_is_404(app, client) -> None:
    tenant = create_account("paused", enabled=False)

    answer = post_to(client, "paused", 123, tenant.secret)

    assert answer.status_code == 404
    assert events() == []


def test_a_notification_signed_for_another_account_is_refused(app, client) -> None:
    a = create_account("shop-a")
    create_account("shop-b")

    crossed = post_to(client, "shop-b", 123, a.secret)
    default = post_to(client, "shop-a", 123, TestingConfig.MP_WEBHOOK_SECRET)
    unsigned = post_to(client, "shop-a", 123, None)

    assert [crossed.status_code, default.status_code, unsigned.status_code] == [401, 401, 401]
    assert events() == []


def test_an_account_without_its_secret_yet_refuses_everything(app, client) -> None:
    """Created, its secret not pasted back yet (README, "three steps"): nothing can vouch for
    a notification, signed or not, so none is stored; MercadoPago delivers them again."""
    create_account("bare", with_secrets=False)

    unsigned = post_to(client, "bare", 123, None)

    assert unsigned.status_code == 401
    assert "no webhook secret yet" in unsigned.json["error"]
    assert events() == []


def test_webhook_ids_are_unique_per_account(app, client) -> None:
    a, b = create_account("shop-a"), create_account("shop-b")

    first_a = post_to(client, "shop-a", 123, a.secret, notification_id=777)
    first_b = post_to(client, "shop-b", 123, b.secret, notification_id=777)
    again_a = post_to(client, "shop-a", 123, a.secret, notification_id=777)

    assert [first_a.json["status"], first_b.json["status"]] == ["accepted", "accepted"]
    assert first_a.json["event_id"] != first_b.json["event_id"]
    assert again_a.json == {"status": "duplicate", "event_id": first_a.json["event_id"]}
    assert sorted((e.webhook_id, e.account_id) for e in events()) == [
        ("mp:777", a.id),
        ("mp:777", b.id),
    ]


# -- isolation in the worker ---------------------------------------------------------------


def test_two_accounts_with_the_same_payment_id_stay_apart(app, client, sandbox) -> None:
    a = create_account("shop-a")
    b = create_account("shop-b", status_tags="approved=paid-b")
    register(sandbox, a, b)
    # The same id at two sellers: a payment of nobody's is readable with both tokens.
    payment = sandbox.state.add_payment(status="approved", payer={"email": "ann@example.com"})
    # A contact of B's location that A's work must not touch.
    bystander, _ = sandbox.state.upsert_contact(
        {"locationId": b.location, "email": "bob@example.com", "tags": ["vip"]}
    )

    for tenant in (a, b):
        assert post_to(client, tenant.slug, payment["id"], tenant.secret).status_code == 200
    drain(app)

    assert {e.status for e in events()} == {EventStatus.SUCCESS}
    rows = db.session.query(Payment).order_by(Payment.account_id).all()
    assert [(r.account_id, r.mp_payment_id) for r in rows] == [
        (a.id, str(payment["id"])),
        (b.id, str(payment["id"])),
    ]
    # Each account read MercadoPago with its own token and wrote to its own location.
    mp_calls = sandbox.state.calls(api="mercadopago")
    assert sorted(c["token"] for c in mp_calls) == sorted([a.mp_token, b.mp_token])
    for call in sandbox.state.calls(api="gohighlevel"):
        tenant = a if call["token"] == a.ghl_token else b
        assert call["token"] == tenant.ghl_token
        assert call["status"] < 400, call
        if call["path"] == "/contacts/upsert":
            assert call["json"]["locationId"] == tenant.location
    contacts = {(c["locationId"], c["email"]): c["tags"] for c in sandbox.state.contacts()}
    assert contacts == {
        (a.location, "ann@example.com"): ["mp-payment-approved"],
        (b.location, "ann@example.com"): ["paid-b"],
        (b.location, "bob@example.com"): ["vip"],
    }
    assert sandbox.state.get_contact(bystander["id"]) == bystander
    assert {r.account_id: r.ghl_contact_id for r in rows} == {
        a.id: sandbox.state.find_contact("ann@example.com", a.location)["id"],
        b.id: sandbox.state.find_contact("ann@example.com", b.location)["id"],
    }


def test_an_account_cannot_read_another_sellers_payment(app, client, sandbox) -> None:
    a, b = create_account("shop-a"), create_account("shop-b")
    register(sandbox, a, b)
    bs = sandbox.state.add_payment(owner=b.mp_token, status="approved")

    # A forwards B's payment id (a confused merchant, or a forged notification).
    post_to(client, "shop-a", bs["id"], a.secret)
    run_worker(app)  # the first attempt (a 404 is retried: it may be MercadoPago's lag)

    calls = sandbox.state.calls(api="mercadopago")
    assert [(c["token"], c["status"]) for c in calls] == [(a.mp_token, 404)]
    assert [e.status for e in events()] != [EventStatus.SUCCESS]
    assert db.session.query(Payment).count() == 0
    assert sandbox.state.contacts() == []


# -- queues --------------------------------------------------------------------------------


def queued(app, name: str) -> list[str]:
    return get_queue(app, name=name).job_ids


def test_an_accounts_events_go_to_its_own_queue(app, client) -> None:
    a, b = create_account("shop-a"), create_account("shop-b")

    post_to(client, "shop-a", 1, a.secret)
    post_to(client, "shop-b", 2, b.secret)
    post_to(client, "shop-b", 3, b.secret)

    assert account_queue_name(a.id) != account_queue_name(b.id) != queue_names()[1]
    assert len(queued(app, account_queue_name(a.id))) == 1
    assert len(queued(app, account_queue_name(b.id))) == 2
    assert queued(app, queue_names()[1]) == []  # the default account's


def test_the_fair_worker_serves_accounts_in_turn(app, client, sandbox) -> None:
    a, b = create_account("shop-a"), create_account("shop-b")
    register(sandbox, a, b)
    for _ in range(50):
        post_to(client, "shop-a", sandbox.state.add_payment(owner=a.mp_token)["id"], a.secret)
    late = post_to(client, "shop-b", sandbox.state.add_payment(owner=b.mp_token)["id"], b.secret)

    worker = make_worker(app, SimpleWorker, get_redis(app))
    worker.work(burst=True, max_jobs=2)

    done = {e.id: e.status for e in events() if e.status == EventStatus.SUCCESS}
    assert late.json["event_id"] in done and len(done) == 2
    assert len(queued(app, account_queue_name(a.id))) == 49


def test_the_priority_queue_still_goes_first(app, client, sandbox) -> None:
    a = create_account("shop-a")
    register(sandbox, a)
    for _ in range(3):
        post_to(client, "shop-a", sandbox.state.add_payment(owner=a.mp_token)["id"], a.secret)
    claimed = sandbox.state.add_payment(owner=a.mp_token)
    claim = sandbox.state.add_claim(resource_id=claimed["id"])
    urgent = post_to(
        client, "shop-a", claim["id"], a.secret, event_type="topic_claims_integration_wh"
    )
    assert queued(app, queue_names()[0]) != []

    make_worker(app, SimpleWorker, get_redis(app)).work(burst=True, max_jobs=1)

    done = [e.id for e in events() if e.status == EventStatus.SUCCESS]
    assert done == [urgent.json["event_id"]]


def test_an_account_created_after_the_worker_started_is_served(app, client, sandbox) -> None:
    worker = make_worker(app, SimpleWorker, get_redis(app))
    c = create_account("newcomer")
    register(sandbox, c)
    assert account_queue_name(c.id) not in [q.name for q in worker.queues]
    answer = post_to(
        client, "newcomer", sandbox.state.add_payment(owner=c.mp_token)["id"], c.secret
    )
    app.config["ACCOUNT_QUEUE_REFRESH"] = 0  # the next look at the queues refreshes them

    worker.work(burst=True)

    assert account_queue_name(c.id) in [q.name for q in worker.queues]
    db.session.expire_all()
    assert db.session.get(WebhookEvent, answer.json["event_id"]).status == EventStatus.SUCCESS


def test_accounts_clients_share_one_connection_pool_but_not_tokens_or_cookies(app) -> None:
    from webhooks_app.clients import gohighlevel_client, mercadopago_client

    a, b = create_account("shop-a"), create_account("shop-b")
    clients = []
    for tenant in (a, b):
        with accounts.using_account(accounts.by_id(tenant.id)):
            clients.append((mercadopago_client(), gohighlevel_client()))
    (mp_a, ghl_a), (mp_b, ghl_b) = clients
    assert mp_a is not mp_b and ghl_a is not ghl_b
    assert mp_a.session is mp_b.session and ghl_a.session is ghl_b.session
    assert mp_a._http._auth._token == a.mp_token and mp_b._http._auth._token == b.mp_token
    assert ghl_a.location_id == a.location and ghl_b.location_id == b.location
    # A cookie one account's call was given is never sent with another's.
    mp_a.session.cookies.set("lb", "node-1")
    assert len(mp_a.session.cookies) == 0
    prepared = mp_b.session.prepare_request(requests.Request("GET", f"{mp_b.base_url}/v1/x"))
    assert "Cookie" not in prepared.headers


def test_invented_slugs_never_grow_the_settings_cache(app, client) -> None:
    app.config["ACCOUNT_CACHE_SECONDS"] = 60
    create_account("shop-a")
    assert post_to(client, "shop-a", 1, "webhook-secret-shop-a").status_code == 200
    for n in range(50):
        assert post_to(client, f"invented-{n}", 1, None).status_code == 404
    cached = app.extensions["account_cache"].by_key
    assert ("slug", "shop-a") in cached
    assert not [key for key in cached if "invented" in str(key)]


def test_a_worker_outlives_an_unreachable_database(sandbox, app) -> None:
    from rq import SimpleWorker

    from webhooks_app.fair_worker import make_worker
    from webhooks_app.queueing import get_redis, queue_names

    from conftest import make_app

    down = make_app(sandbox, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/x")
    worker = make_worker(down, SimpleWorker, get_redis(down))
    assert [queue.name for queue in worker.queues] == list(queue_names(down))
    worker.refresh_queues()  # logged, not raised: the worker goes on with its queues
    assert [queue.name for queue in worker.queues] == list(queue_names(down))
