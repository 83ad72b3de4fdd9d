"""A rate limit shared by every worker, kept in Redis (the `limits` library's moving window).

GoHighLevel allows 100 requests per 10 s per location. Each worker asks for a
slot before each call and waits when there is none, so a burst drains at the
allowed rate instead of failing with 429s. GoHighLevel also says, on every
response, how many requests are left (`X-RateLimit-Remaining`, and the daily
pair; https://marketplace.gohighlevel.com/docs/other/rate-limits): `observe`
pauses every worker for the interval once none is left (another integration
using the same location spends the same budget), before the API answers 429.
A 429 that still happens pauses every worker (`pause`) for its wait.

Slots and pauses are per key (a GoHighLevel location): one location's exhausted budget
never delays another's calls. A pause without a key holds every key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

logger = logging.getLogger(__name__)


class RateLimitHeaders(Protocol):
    """What `observe` reads of an API's rate-limit headers (e.g. GoHighLevel's RateLimitInfo)."""

    @property
    def exhausted(self) -> bool: ...  # no request left in the interval (or the day)

    @property
    def interval_seconds(self) -> float | None: ...

    @property
    def seen_at(self) -> float: ...  # time.time() of the response


class RateLimitTimeout(Exception):
    """No slot came free within the allowed wait."""

    def __init__(self, name: str, waited: float, retry_after: float) -> None:
        super().__init__(f"no {name} rate-limit slot within {waited:.1f}s")
        self.retryable = True
        self.retry_after = retry_after


class SharedRateLimiter:
    """`requests` per `seconds` for each key, across processes."""

    def __init__(self, redis: Redis, name: str, requests: int, seconds: float) -> None:
        self.redis = redis
        self.name = name
        self.item = RateLimitItemPerSecond(requests, max(1, round(seconds)))
        storage = RedisStorage("redis://", connection_pool=redis.connection_pool)
        self.limiter = MovingWindowRateLimiter(storage)
        self.pause_key = f"ratelimit:{name}:paused-until"

    def _pause_key(self, key: str | None) -> str:
        return self.pause_key if key is None else f"{self.pause_key}:{key}"

    def acquire(
        self, key: str, max_wait: float, on_wait: Callable[[], None] | None = None
    ) -> float:
        """Take a slot for `key`, waiting up to `max_wait` s; return the time waited.

        `on_wait` is called while waiting (e.g. to renew a lease). Raises
        RateLimitTimeout when no slot frees up in time.
        """
        started = time.monotonic()
        while True:
            pause = self._paused_for(key)
            if pause <= 0 and self.limiter.hit(self.item, self.name, key):
                return time.monotonic() - started
            if pause <= 0:
                reset_at, _ = self.limiter.get_window_stats(self.item, self.name, key)
                pause = max(0.01, reset_at - time.time())
            waited = time.monotonic() - started
            if waited + pause > max_wait:
                raise RateLimitTimeout(self.name, waited, retry_after=pause)
            if on_wait:
                on_wait()
            time.sleep(min(pause, 1.0))

    def pause(self, seconds: float, key: str | None = None) -> None:
        """Stop every worker from calling for `key` (None: any key) for `seconds` (the API
        answered 429, or none is left)."""
        until = time.time() + seconds
        self.redis.set(self._pause_key(key), until, px=max(1, int(seconds * 1000)))
        logger.warning(
            "%s rate limited%s: all workers pause for %.1fs",
            self.name,
            f" for {key}" if key is not None else "",
            seconds,
        )

    def observe(self, info: RateLimitHeaders | None, key: str | None = None) -> float:
        """Slow down on the API's own count: when it says no request is left, pause for the
        rest of its interval (counted from the response). Return the pause set (0: none).

        The API does not say when its window started, so the whole interval is waited.
        A pause already longer is kept.
        """
        if info is None or not info.exhausted or not info.interval_seconds:
            return 0.0
        seconds = info.seen_at + info.interval_seconds - time.time()
        if seconds <= 0 or seconds <= self._paused_for(key):
            return 0.0
        self.pause(seconds, key)
        return seconds

    def _paused_for(self, key: str | None = None) -> float:
        """How long calls for `key` must still wait: its pause or the one of every key."""
        keys = [self.pause_key] if key is None else [self.pause_key, self._pause_key(key)]
        values = [float(value) for value in self.redis.mget(keys) if value]
        return max(values) - time.time() if values else 0.0
