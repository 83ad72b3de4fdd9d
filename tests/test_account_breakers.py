"""Circuit breakers per upstream instance (issue 18): one account's outage or wrong token
holds that account's events only; an operator resumes that account alone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accounts_support import post_for, second_account
from factories import add_event
from test_alerts import Receiver

from webhooks_app import accounts, breaker
from webhooks_app.extensions import db
from webhooks_app.holds import catch_up_held, processing_gate
from webhooks_app.models import EventStatus, ProcessingPause
from webhooks_app.pausing import PauseError, resume
from webhooks_app.queueing import get_redis, get_scheduler
from webhooks_app.services.errors import PermanentApiError, TransientApiError

from conftest import API_TOKEN, api_headers, drain, events, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)

GHL, MP = "gohighlevel", "mercadopago"


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def shop_b(app):
    yield from second_account()


@pytest.fixture
def small(sandbox, app, receiver):
    """Breakers that open after 3 failures (2 refusals) and stay open for the whole test."""
    small = make_app(
        sandbox,
        BREAKER_THRESHOLD=3,
        BREAKER_AUTH_THRESHOLD=2,
        BREAKER_COOLDOWN=30.0,
        BREAKER_MAX_COOLDOWN=60.0,
        ALERT_WEBHOOK_URL=receiver.url,
    )
    with small.app_context():
        yield small
        db.session.remove()


def settings(account) -> accounts.AccountSettings:
    return accounts.by_id(account.id)


def row(event) -> SimpleNamespace:
    """What the gate reads of an event (an attempt's row of it)."""
    return SimpleNamespace(id=event.id, account_id=event.account_id, type=event.type)


def failing(upstream: str, status: int = 503) -> Exception:
    if status >= 500:
        return TransientApiError(str(status), service=upstream, status_code=status)
    return PermanentApiError(str(status), service=upstream, status_code=status)


def test_keys_and_scopes(small, shop_b):
    b = settings(shop_b)
    assert breaker.scope_of(GHL, None) == "" and breaker.scope_of(MP, accounts.by_id(1)) == ""
    assert breaker.scope_of(GHL, b) == "location-loc-b"  # GoHighLevel: per location
    assert breaker.scope_of(MP, b) == f"account-{shop_b.id}"  # MercadoPago: per application
    with accounts.using_account(b):
        for _ in range(3):
            breaker.record_call(GHL, failing(GHL))
    redis = get_redis(small)
    assert redis.get("webhooks:breaker:gohighlevel") is None  # the default account's: closed
    assert redis.get("webhooks:breaker:gohighlevel@location-loc-b") is not None


def test_one_accounts_outage_holds_only_its_events(small, shop_b):
    b = settings(shop_b)
    with accounts.using_account(b):
        for _ in range(3):
            breaker.record_call(GHL, failing(GHL))
            breaker.record_call(MP, failing(MP))
    ours, theirs = add_event(), add_event(account_id=shop_b.id)
    assert processing_gate(row(ours)) is None  # the default account's events run
    assert breaker.load([GHL, MP]) == {GHL: None, MP: None}
    found = breaker.load([GHL, MP], account=b)
    assert {name: found[name].state(0) for name in found} == {GHL: "open", MP: "open"}
    assert found[GHL].account == "shop-b" and found[MP].scope == f"account-{shop_b.id}"
    assert processing_gate(row(theirs)) == EventStatus.PENDING  # held by shop-b's breakers
    db.session.refresh(theirs)
    assert theirs.attempts == 0 and theirs.next_retry_at is not None  # due after the cool-down
    (job,) = list(get_scheduler(small).get_jobs())
    assert job.origin == f"webhooks-test-account-{shop_b.id}"  # its account's queue
    assert catch_up_held() is None
    with accounts.using_account(b):
        assert "circuit breaker is open" in catch_up_held()

    shown = breaker.states_for_display()
    assert shown[GHL]["state"] == "closed" and shown[GHL]["accounts"] == ["default"]
    assert shown["gohighlevel@location-loc-b"]["state"] == "open"
    assert shown["gohighlevel@location-loc-b"]["accounts"] == ["shop-b"]
    assert shown[f"mercadopago@account-{shop_b.id}"]["accounts"] == ["shop-b"]
    metrics = small.test_client().get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
    text = metrics.get_data(as_text=True)
    assert 'webhooks_breaker_state{upstream="gohighlevel"} 0.0' in text
    assert (
        'webhooks_account_breaker_state{accounts="shop-b",scope="location-loc-b",'
        'upstream="gohighlevel"} 1.0'
    ) in text


def test_a_wrong_token_of_one_account_holds_it_until_that_account_is_resumed(
    small, shop_b, sandbox, receiver, runner
):
    sandbox.state.ghl_token = "test-ghl-token"  # the default account's: shop-b's is refused
    client = small.test_client()
    try:
        theirs = [post_for(client, "shop-b", sandbox.state.add_payment()["id"]) for _ in range(4)]
        assert all(answer.status_code == 200 for answer in theirs)
        ours = [post_webhook(client, sandbox.state.add_payment()["id"]) for _ in range(2)]
        run_worker(small)
        stored = {e.id: e for e in events()}
        b_events = [stored[a.json["event_id"]] for a in theirs]
        assert [e.status for e in b_events[:2]] == [EventStatus.FAILED] * 2  # 401: not retried
        assert [(e.status, e.attempts) for e in b_events[2:]] == [(EventStatus.PENDING, 0)] * 2
        assert {stored[a.json["event_id"]].status for a in ours} == {EventStatus.SUCCESS}
        assert db.session.query(ProcessingPause).count() == 0  # no stage paused for anyone
        state = breaker.states_for_display()["gohighlevel@location-loc-b"]
        assert (state["state"], state["needs_operator"], state["open_until"]) == (
            "open",
            True,
            None,
        )
        alert = receiver.received[0]["text"]
        assert "account shop-b" in alert and "--account shop-b" in alert
        # Another default-account event still runs while shop-b waits.
        later = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
        run_worker(small)
        assert db.session.get(type(b_events[0]), later).status == EventStatus.SUCCESS
    finally:
        sandbox.state.ghl_token = None

    result = runner.invoke(
        args=["webhooks", "resume", "--stage", GHL, "--account", "shop-b", "--by", "ops"]
    )
    assert result.exit_code == 0, result.output
    assert "account shop-b" in result.output and "breakers closed: gohighlevel" in result.output
    assert breaker.load([GHL], account=settings(shop_b))[GHL] is None
    # Its held events were due at the end of the longest cool-down: due now, drained.
    db.session.execute(
        db.update(type(b_events[0]))
        .where(type(b_events[0]).id.in_([e.id for e in b_events[2:]]))
        .values(next_retry_at=None)
    )
    db.session.commit()
    report = resume(GHL, "ops", account="shop-b")
    assert report.breakers_reset == [] and report.enqueued == 2  # closed already; its two
    drain(small, timeout=20, until=lambda: all(e.status != "pending" for e in events()))
    assert [e.status for e in events() if e.id in {b.id for b in b_events[2:]}] == [
        EventStatus.SUCCESS
    ] * 2


def test_resume_of_an_account_through_the_api_and_refusals(small, shop_b, client):
    b = settings(shop_b)
    with accounts.using_account(b):
        for _ in range(2):
            breaker.record_call(MP, failing(MP, 401))
    assert breaker.load([MP], account=b)[MP].needs_operator
    assert db.session.query(ProcessingPause).count() == 0
    answer = client.post(
        "/api/processing/resume", json={"stage": MP, "account": "shop-b"}, headers=api_headers()
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["account"] == "shop-b" and answer.json["breakers_reset"] == [MP]
    assert breaker.load([MP], account=b)[MP] is None
    refused = client.post(
        "/api/processing/resume", json={"account": "nobody"}, headers=api_headers()
    )
    assert refused.status_code == 400 and "nobody" in refused.json["error"]
    with pytest.raises(PauseError):
        resume("all", "ops", account="no-such-shop")


def test_the_default_accounts_refusal_still_pauses_the_stage(small, shop_b):
    for _ in range(2):
        breaker.record_call(GHL, failing(GHL, 401))  # outside an attempt: the default account
    assert db.session.get(ProcessingPause, GHL).paused_by == "circuit-breaker"
    assert breaker.load([GHL], account=settings(shop_b))[GHL] is None  # shop-b's: closed
    report = resume(GHL, "ops", account="default")  # `default` is the deployment's resume
    assert report.resumed == [GHL] and report.breakers_reset == [GHL]


def test_the_admin_resumes_one_accounts_breaker(sandbox, app, shop_b):
    from test_admin import AUTH, PASSWORD, USERNAME, csrf_token

    admin = make_app(
        sandbox,
        ADMIN_USERNAME=USERNAME,
        ADMIN_PASSWORD=PASSWORD,
        BREAKER_AUTH_THRESHOLD=2,
        BREAKER_COOLDOWN=30.0,
    )
    with admin.app_context():
        b = settings(shop_b)
        with accounts.using_account(b):
            for _ in range(2):
                breaker.record_call(GHL, failing(GHL, 401))
        client = admin.test_client()
        page = client.get("/admin/processing", headers=AUTH)
        assert "Resume gohighlevel for shop-b" in page.text
        form = {"csrf_token": csrf_token(client), "stage": GHL, "account": "shop-b"}
        answer = client.post("/admin/processing/resume", data=form, headers=AUTH)
        assert answer.status_code == 302
        assert breaker.load([GHL], account=b)[GHL] is None
        assert "Resume gohighlevel for shop-b" not in client.get(
            "/admin/processing", headers=AUTH
        ).text
        db.session.remove()
