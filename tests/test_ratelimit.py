"""The GoHighLevel rate limit shared by every worker through Redis."""

from __future__ import annotations

import time

import pytest

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_redis
from webhooks_app.ratelimit import RateLimitTimeout, SharedRateLimiter
from webhooks_app.services.gohighlevel import RateLimitInfo

from conftest import make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


def test_slots_are_shared_between_limiters(app):
    # Two limiters on one Redis stand for two worker processes.
    first = SharedRateLimiter(get_redis(app), "test", 3, 1)
    second = SharedRateLimiter(get_redis(app), "test", 3, 1)
    started = time.monotonic()
    for limiter in (first, second, first):
        limiter.acquire("loc", max_wait=0)  # a free slot: no wait allowed, none needed
    with pytest.raises(RateLimitTimeout) as excinfo:
        second.acquire("loc", max_wait=0.01)
    assert 0 < excinfo.value.retry_after <= 1.0 and excinfo.value.retryable
    waited = second.acquire("loc", max_wait=2)  # waits for the window to move
    assert time.monotonic() - started >= 0.9 and waited > 0
    first.acquire("other-location", max_wait=0)  # limits are per key: a slot at once


def test_a_429_pauses_every_worker(app):
    limiter = SharedRateLimiter(get_redis(app), "test", 100, 10)
    other = SharedRateLimiter(get_redis(app), "test", 100, 10)
    limiter.pause(0.5)
    calls: list[float] = []
    renewals: list[int] = []
    started = time.monotonic()
    other.acquire("loc", max_wait=2, on_wait=lambda: renewals.append(1))
    calls.append(time.monotonic() - started)
    assert calls[0] >= 0.4 and renewals  # waited out the pause, renewing its lease meanwhile


def test_observe_pauses_every_worker_when_none_is_left(app):
    limiter = SharedRateLimiter(get_redis(app), "test", 100, 10)
    other = SharedRateLimiter(get_redis(app), "test", 100, 10)
    now = time.time()

    assert limiter.observe(None) == 0
    assert limiter.observe(RateLimitInfo(100, 5, 500, 200_000, 9, now)) == 0  # some left
    assert limiter.observe(RateLimitInfo(100, 0, 500, 200_000, 9, now - 1)) == 0  # stale
    paused = limiter.observe(RateLimitInfo(100, 0, 500, 200_000, 9, now))
    started = time.monotonic()
    other.acquire("loc", max_wait=2)

    assert 0.4 < paused <= 0.5
    assert time.monotonic() - started >= 0.35  # the other worker waited the interval out
    daily = limiter.observe(RateLimitInfo(100, 7, 300, 200_000, 0, time.time()))
    assert 0.2 < daily <= 0.3  # none left today: the interval is paused too


def test_pipeline_slows_down_on_ghl_remaining_before_a_429(sandbox, client):
    """Our own limit is far above the API's (another integration spends the same budget):
    the API's X-RateLimit-Remaining still keeps the calls clear of 429s."""
    generous = make_app(sandbox, GHL_RATE_LIMIT="100/10")
    sandbox.state.set_rate_limit(3, 1.0)
    for _ in range(3):
        post_webhook(client, sandbox.state.add_payment()["id"])
    with generous.app_context():
        run_worker(generous)
        statuses = {e.status for e in db.session.query(WebhookEvent)}
    ghl = sandbox.state.calls(api="gohighlevel")
    assert statuses == {EventStatus.SUCCESS}
    assert [c["status"] for c in ghl].count(429) == 0 and len(ghl) == 6


def test_burst_through_the_pipeline_never_exceeds_the_limit(sandbox, client):
    """Eight events, two GHL calls each, against a GHL that allows 5 per second.

    The service is set a little under the API's limit, as by default (9/1 for
    GHL's 100/10): latency jitter must not push a call into the API's window.
    """
    limited = make_app(sandbox, GHL_RATE_LIMIT="4/1")
    sandbox.state.set_rate_limit(5, 1.0)
    for _ in range(8):
        post_webhook(client, sandbox.state.add_payment()["id"])
    with limited.app_context():
        run_worker(limited)
        statuses = {e.status for e in db.session.query(WebhookEvent)}
    ghl = sandbox.state.calls(api="gohighlevel")
    assert statuses == {EventStatus.SUCCESS}
    assert len(ghl) == 16 and {c["status"] for c in ghl} <= {200, 201}  # no 429 at all
    times = sorted(c["time"] for c in ghl)
    assert times[-1] - times[0] >= 2.9  # 16 calls at 4/s need more than 3 s
