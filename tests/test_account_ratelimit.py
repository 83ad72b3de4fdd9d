"""GoHighLevel's rate limit per location (issue 18): one account's location running out
of requests never delays another location's calls (real Redis, the limiter on)."""

from __future__ import annotations

import time

import pytest
from accounts_support import second_account

from webhooks_app import accounts
from webhooks_app.crm.gohighlevel import call_gohighlevel
from webhooks_app.extensions import db
from webhooks_app.queueing import get_redis
from webhooks_app.ratelimit import RateLimitTimeout, SharedRateLimiter
from webhooks_app.services.gohighlevel import RateLimitInfo

from conftest import make_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shop_b(app):
    yield from second_account()


@pytest.fixture
def limited(sandbox, app):
    """Two calls per 10 s per location; a call waits at most 1 s for a slot."""
    limited = make_app(sandbox, GHL_RATE_LIMIT="2/10", GHL_MAX_WAIT=1.0)
    with limited.app_context():
        yield limited
        db.session.remove()


def upsert(email: str) -> dict:
    return call_gohighlevel(lambda client: client.upsert_contact(email=email), lambda: None)


def test_pauses_and_slots_are_per_location(app):
    limiter = SharedRateLimiter(get_redis(app), "test", 2, 10)
    limiter.acquire("loc-a", max_wait=0)
    limiter.acquire("loc-a", max_wait=0)
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("loc-a", max_wait=0.1)  # loc-a's budget is spent …
    assert limiter.acquire("loc-b", max_wait=0) == pytest.approx(0, abs=0.05)  # … not loc-b's
    # GoHighLevel says loc-a has none left (X-RateLimit-Remaining: 0): only loc-a pauses.
    spent = RateLimitInfo(100, 0, 10_000, 200_000, 9, time.time())
    assert limiter.observe(spent, "loc-a") > 9
    assert limiter._paused_for("loc-b") <= 0
    limiter.pause(5, "loc-a")  # a 429 for loc-a
    started = time.monotonic()
    limiter.acquire("loc-b", max_wait=0)
    assert time.monotonic() - started < 0.5


def test_one_location_out_of_requests_does_not_delay_another(limited, shop_b, sandbox):
    ours = accounts.by_id(1)
    theirs = accounts.by_id(shop_b.id)
    with accounts.using_account(ours):  # the default account's location: test-location
        upsert("a1@example.com")
        upsert("a2@example.com")
        started = time.monotonic()
        with pytest.raises(RateLimitTimeout):
            upsert("a3@example.com")  # no slot within GHL_MAX_WAIT
        assert time.monotonic() - started < 1.5
    with accounts.using_account(theirs):  # loc-b: its own budget, at once
        started = time.monotonic()
        upsert("b1@example.com")
        upsert("b2@example.com")
        assert time.monotonic() - started < 0.5
    calls = sandbox.state.calls(api="gohighlevel")
    assert len(calls) == 4 and {c["status"] for c in calls} <= {200, 201}


def test_a_429_of_one_location_pauses_only_that_location(limited, shop_b, sandbox):
    sandbox.state.set_fault("gohighlevel", "a1@example.com", status=429, times=1, retry_after=5)
    with accounts.using_account(accounts.by_id(1)):
        with pytest.raises(Exception) as excinfo:  # waited past GHL_MAX_WAIT: given up
            upsert("a1@example.com")
        assert excinfo.value.retry_after >= 4
    redis = get_redis(limited)
    assert redis.get("ratelimit:gohighlevel:paused-until") is None  # no pause for everyone
    assert redis.get("ratelimit:gohighlevel:paused-until:test-location") is not None
    with accounts.using_account(accounts.by_id(shop_b.id)):
        started = time.monotonic()
        upsert("b1@example.com")
        assert time.monotonic() - started < 0.5
