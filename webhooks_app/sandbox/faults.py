"""Fault-injection policies: scripted faults, random failures, rate limit, latency.

Pure logic with no locking of its own: `SandboxState` owns one lock and calls
these objects only while holding it.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field

MERCADOPAGO = "mercadopago"
GOHIGHLEVEL = "gohighlevel"
APIS = (MERCADOPAGO, GOHIGHLEVEL)
WILDCARD = "*"

_API_ALIASES = {
    "mercadopago": MERCADOPAGO,
    "mp": MERCADOPAGO,
    "gohighlevel": GOHIGHLEVEL,
    "ghl": GOHIGHLEVEL,
}


class RealClock:
    """Wall and monotonic clocks captured at import time.

    freezegun patches `time.time`/`time.monotonic` wherever a module attribute
    refers to them, and the test-suite may freeze time while this server runs
    in a thread of the same process; class attributes are not patched, so rate
    windows and call times keep moving.
    """

    monotonic = staticmethod(time.monotonic)
    # Last: from here on, `time` in this class body names this attribute.
    time = staticmethod(time.time)


def normalise_api(api: str) -> str:
    """Return the canonical API name ("mercadopago" or "gohighlevel"); accept "mp"/"ghl"."""
    try:
        return _API_ALIASES[str(api).strip().lower()]
    except KeyError:
        raise ValueError(f"api must be one of {list(APIS)}, got {api!r}") from None


def format_seconds(seconds: float) -> str:
    """Render a Retry-After value: whole seconds as "2", fractions as "0.25"."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0")


@dataclass
class Fault:
    """A scripted failure for one key: answer `status` (after `delay`) `remaining` times."""

    status: int
    remaining: int  # -1 means forever
    delay: float = 0.0
    retry_after: float | None = None

    def consume(self) -> None:
        """Count one matched request."""
        if self.remaining > 0:
            self.remaining -= 1

    @property
    def exhausted(self) -> bool:
        """True once the fault has failed as many requests as it was told to."""
        return self.remaining == 0

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {
            "status": self.status,
            "times": self.remaining,
            "delay": self.delay,
            "retry_after": self.retry_after,
        }


class RandomFailures:
    """Fail a fraction of calls; the sequence of outcomes is fixed by the seed."""

    def __init__(self, rate: float, seed: int, status: int = 500) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        self.rate = rate
        self.seed = seed
        self.status = status
        # A private generator: other users of `random` cannot shift the sequence.
        self._rng = random.Random(seed)

    def draw(self) -> bool:
        """True when this call must fail."""
        return self._rng.random() < self.rate

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {"rate": self.rate, "seed": self.seed, "status": self.status}


# GoHighLevel's documented defaults: 100 requests per 10 s and 200,000 a day, per app and
# location (https://marketplace.gohighlevel.com/docs/other/rate-limits).
GHL_BURST_REQUESTS = 100
GHL_BURST_SECONDS = 10.0
GHL_DAILY_REQUESTS = 200_000
SECONDS_PER_DAY = 86_400


class RateLimiter:
    """Sliding-window limit of `requests` per `per_seconds`, and `daily` a day, per bucket.

    A bucket is a GHL location. With `enforce=False` calls are only counted, for
    the headers: the sandbox then acts as an app whose limits were raised.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        daily: int = GHL_DAILY_REQUESTS,
        *,
        enforce: bool = True,
    ) -> None:
        if requests < 1 or per_seconds <= 0 or daily < 1:
            raise ValueError("rate limit needs requests >= 1, per_seconds > 0 and daily >= 1")
        self.requests = requests
        self.per_seconds = per_seconds
        self.daily = daily
        self.enforce = enforce
        self._hits: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[int, int]] = {}  # bucket -> (UTC day number, calls that day)

    def hit(self, bucket: str, now: float, wall: float) -> tuple[bool, float, int, int]:
        """Count a call at monotonic `now` and wall-clock `wall`.

        Return (allowed, seconds until a burst slot frees, burst remaining, daily remaining).
        """
        hits = self._hits.setdefault(bucket, deque())
        while hits and hits[0] <= now - self.per_seconds:
            hits.popleft()
        day = int(wall // SECONDS_PER_DAY)
        last_day, used = self._days.get(bucket, (day, 0))
        if last_day != day:
            used = 0
        if self.enforce and used >= self.daily:
            return False, SECONDS_PER_DAY - wall % SECONDS_PER_DAY, self._left(hits), 0
        if self.enforce and len(hits) >= self.requests:
            # Rejected calls are not recorded, so the wait is exactly until the oldest expires.
            return False, hits[0] + self.per_seconds - now, 0, self.daily - used
        hits.append(now)
        self._days[bucket] = (day, used + 1)
        return True, 0.0, self._left(hits), max(0, self.daily - used - 1)

    def _left(self, hits: deque[float]) -> int:
        return max(0, self.requests - len(hits))

    def headers(self, remaining: int, daily_remaining: int) -> dict[str, str]:
        """The rate-limit headers GoHighLevel sends with each answer (burst and daily pairs)."""
        return {
            "X-RateLimit-Limit-Daily": str(self.daily),
            "X-RateLimit-Daily-Remaining": str(daily_remaining),
            "X-RateLimit-Interval-Milliseconds": str(int(self.per_seconds * 1000)),
            "X-RateLimit-Max": str(self.requests),
            "X-RateLimit-Remaining": str(remaining),
        }

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {"requests": self.requests, "per_seconds": self.per_seconds, "daily": self.daily}


@dataclass
class Latency:
    """Uniform random latency added to every call of one API."""

    min_seconds: float
    max_seconds: float
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.min_seconds < 0 or self.max_seconds < self.min_seconds:
            raise ValueError("latency needs 0 <= min_seconds <= max_seconds")

    def draw(self) -> float:
        """Seconds to wait before answering this call."""
        return self._rng.uniform(self.min_seconds, self.max_seconds)

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {"min_seconds": self.min_seconds, "max_seconds": self.max_seconds}


@dataclass(frozen=True)
class Admission:
    """What the sandbox decided for one API call before handling it."""

    sleep: float = 0.0
    status: int | None = None  # None: handle the call normally
    retry_after: float | None = None
    outcome: str = "ok"  # ok, delayed, fault, random_failure, rate_limited
    headers: dict[str, str] = field(default_factory=dict)


def rate_limited(sleep: float, headers: dict[str, str]) -> Admission:
    """The admission of a call over the rate limit.

    No Retry-After: GoHighLevel documents none, only the X-RateLimit-* headers
    (https://marketplace.gohighlevel.com/docs/other/rate-limits).
    """
    return Admission(sleep=sleep, status=429, outcome="rate_limited", headers=headers)
