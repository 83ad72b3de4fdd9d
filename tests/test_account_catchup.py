"""Catch-up per account (issue 18): each account with its own token, cursor and events;
one account's MercadoPago failure does not stop the others'."""

from __future__ import annotations

from datetime import timedelta

import pytest
from accounts_support import second_account

from webhooks_app import accounts, breaker
from webhooks_app.catchup import CURSOR_KEY, catch_up_accounts, cursor_key
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookEvent
from webhooks_app.periodic import build_tasks
from webhooks_app.queueing import get_redis
from webhooks_app.services.errors import TransientApiError
from webhooks_app.timeutil import utcnow

from conftest import drain, events, make_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shop_b(app):
    yield from second_account()


def an_hour_ago():
    return utcnow() - timedelta(hours=1)


def test_each_account_catches_up_with_its_own_cursor_and_events(app, sandbox, shop_b):
    first = sandbox.state.add_payment(status="approved")
    reports = catch_up_accounts()
    assert [(r.account, r.scanned, len(r.created)) for r in reports] == [
        ("default", 1, 1),
        ("shop-b", 1, 1),
    ]
    by_account = {e.account_id: e for e in events()}
    assert set(by_account) == {1, shop_b.id}  # one event each, in each account
    assert {e.resource_id for e in by_account.values()} == {str(first["id"])}
    redis = get_redis(app)
    assert cursor_key(1) == CURSOR_KEY and redis.get(CURSOR_KEY) is not None
    assert redis.get(f"{CURSOR_KEY}:{shop_b.id}") is not None

    drain(app)
    db.session.expire_all()
    assert {(p.account_id, p.mp_payment_id) for p in db.session.query(Payment)} == {
        (1, str(first["id"])),
        (shop_b.id, str(first["id"])),
    }
    assert {e.status for e in events()} == {EventStatus.SUCCESS}
    # From each one's cursor: a payment changed since is caught up in both, once each.
    later = sandbox.state.add_payment()
    again = catch_up_accounts()
    assert [(r.account, len(r.created)) for r in again] == [("default", 1), ("shop-b", 1)]
    assert all(r.since > utcnow() - timedelta(minutes=10) for r in again)
    assert {e.resource_id for e in events() if e.id in again[1].created} == {str(later["id"])}


def test_one_accounts_failure_does_not_stop_the_others(app, sandbox, shop_b):
    sandbox.state.add_payment()
    sandbox.state.access_token = "test-mp-token"  # the default account's: shop-b's is refused
    reports = catch_up_accounts(since=an_hour_ago())
    assert reports[0].account == "default" and len(reports[0].created) == 1
    assert reports[1].account == "shop-b" and "401" in reports[1].error
    assert [e.account_id for e in events()] == [1]
    assert get_redis(app).get(cursor_key(shop_b.id)) is None  # it starts over next time


def test_an_accounts_open_breaker_skips_only_its_catch_up(app, sandbox, shop_b):
    sandbox.state.add_payment()
    small = make_app(sandbox, BREAKER_THRESHOLD=2, BREAKER_COOLDOWN=30.0)
    with small.app_context():
        with accounts.using_account(accounts.by_id(shop_b.id)):
            for _ in range(2):
                breaker.record_call(
                    "mercadopago", TransientApiError("503", service="mercadopago", status_code=503)
                )
        reports = catch_up_accounts(since=an_hour_ago())
        assert len(reports[0].created) == 1
        assert "circuit breaker is open" in reports[1].skipped_reason
        db.session.remove()


def test_cli_catches_up_one_account_or_all(app, sandbox, shop_b, runner):
    sandbox.state.add_payment()
    only = runner.invoke(
        args=["webhooks", "catch-up", "--since", "2000-01-01", "--account", "shop-b"]
    )
    assert only.exit_code == 0, only.output
    assert only.output.startswith("shop-b: scanned 1 payment(s)") and "default" not in only.output
    assert [e.account_id for e in events()] == [shop_b.id]
    every = runner.invoke(args=["webhooks", "catch-up", "--since", "2000-01-01"])
    assert every.exit_code == 0, every.output
    assert "default: scanned 1 payment(s)" in every.output and "created 1 event(s)" in every.output
    assert "shop-b: scanned 1 payment(s)" in every.output and "created 0 event(s)" in every.output
    unknown = runner.invoke(args=["webhooks", "catch-up", "--account", "nobody"])
    assert unknown.exit_code == 2 and "nobody" in unknown.output


def test_disabled_accounts_and_accounts_without_a_token_are_left_out(app, sandbox, shop_b):
    sandbox.state.add_payment()
    row = db.session.get(accounts.Account, shop_b.id)
    row.enabled = False
    db.session.commit()
    assert [r.account for r in catch_up_accounts(since=an_hour_ago())] == ["default"]
    assert catch_up_accounts("shop-b")[0].skipped_reason == "disabled"
    off = make_app(sandbox, MP_ACCESS_TOKEN=None)
    with off.app_context():
        row = db.session.get(accounts.Account, shop_b.id)
        row.enabled = True
        db.session.commit()
        # No environment token: the default account is left out, shop-b has its own.
        done = catch_up_accounts(since=an_hour_ago())
        assert [(r.account, len(r.created)) for r in done] == [("shop-b", 1)]
        assert "catch-up" in [t.name for t in build_tasks(off, get_redis(off))]
        db.session.remove()
    assert db.session.query(WebhookEvent).filter_by(account_id=shop_b.id).count() == 1
