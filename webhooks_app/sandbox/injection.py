"""Fault injection and the call log of the sandbox: the half of `SandboxState` that decides
how each API call is treated (latency, GoHighLevel's rate limit, scripted and random
failures) and remembers every call.

A mixin: `SandboxState` owns the lock and the containers (`reset`), this works on them.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping
from typing import Any

from .faults import (
    GHL_DAILY_REQUESTS,
    GOHIGHLEVEL,
    MERCADOPAGO,
    WILDCARD,
    Admission,
    Fault,
    Latency,
    RandomFailures,
    RateLimiter,
    RealClock,
    normalise_api,
    rate_limited,
)

logger = logging.getLogger(__name__)


class FaultInjection:
    """Faults, random failures, rate limit and latency per API; the log of calls."""

    # Set up by SandboxState.__init__ and reset().
    _lock: threading.RLock
    _faults: dict[tuple[str, str], Fault]
    _random: dict[str, RandomFailures]
    _latency: dict[str, Latency]
    _rate_limiter: RateLimiter | None
    _call_counter: RateLimiter
    _calls: list[dict[str, Any]]

    # -- fault injection -----------------------------------------------------------

    @staticmethod
    def _fault_key(api: str, key: Any) -> str:
        key = str(key).strip()
        # E-mails are matched case-insensitively, as GHL does.
        return key.lower() if api == GOHIGHLEVEL else key

    def set_fault(
        self,
        api: str,
        key: str | int,
        *,
        status: int = 500,
        times: int = 1,
        delay: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        """Make the next `times` calls for `key` (or "*") fail with `status` after `delay`.

        `times=-1` fails forever, `times=0` removes the fault; `status=0` only delays.
        A MercadoPago 429 without `retry_after` sends `Retry-After: 1`; a GoHighLevel
        one sends none (GHL documents none), unless `retry_after` is given.
        """
        api = normalise_api(api)
        if times < -1:
            raise ValueError("times must be -1 (forever), 0 (remove) or positive")
        if delay < 0 or (retry_after is not None and retry_after < 0):
            raise ValueError("delay and retry_after must not be negative")
        if status != 0 and not 100 <= status <= 599:
            raise ValueError(f"status must be 0 or an HTTP status, got {status!r}")
        fault_key = (api, self._fault_key(api, key))
        with self._lock:
            if times == 0:
                self._faults.pop(fault_key, None)
            else:
                self._faults[fault_key] = Fault(status, times, float(delay), retry_after)
        logger.info(
            "fault set for %s %r: status=%s times=%s delay=%s",
            *fault_key,
            status,
            times,
            delay,
        )

    def faults(self) -> list[dict[str, Any]]:
        """The active faults."""
        with self._lock:
            return [
                {"api": api, "key": key, **fault.to_dict()}
                for (api, key), fault in self._faults.items()
            ]

    def set_random_failures(self, api: str, rate: float, seed: int, status: int = 500) -> None:
        """Fail `rate` of the calls to `api`, in an order fixed by `seed`; rate 0 disables."""
        api = normalise_api(api)
        with self._lock:
            if rate <= 0:
                self._random.pop(api, None)
            else:
                self._random[api] = RandomFailures(float(rate), int(seed), int(status))

    def set_rate_limit(
        self,
        requests: int | None = 100,
        per_seconds: float = 10.0,
        daily: int = GHL_DAILY_REQUESTS,
    ) -> None:
        """Limit GoHighLevel calls per location (real GHL: 100 per 10 s, 200,000 a day).

        None disables (calls are still counted for the headers).
        """
        with self._lock:
            self._rate_limiter = (
                None
                if requests is None
                else RateLimiter(int(requests), float(per_seconds), int(daily))
            )

    def set_latency(self, api: str, min_seconds: float, max_seconds: float) -> None:
        """Delay every call to `api` by a random time in [min, max]; 0, 0 disables."""
        api = normalise_api(api)
        with self._lock:
            if max_seconds <= 0:
                self._latency.pop(api, None)
            else:
                self._latency[api] = Latency(float(min_seconds), float(max_seconds))

    def settings(self) -> dict[str, Any]:
        """The current fault configuration, for the control API."""
        with self._lock:
            return {
                "faults": self.faults(),
                "random_failures": {api: rf.to_dict() for api, rf in self._random.items()},
                "rate_limit": self._rate_limiter.to_dict() if self._rate_limiter else None,
                "latency": {api: lat.to_dict() for api, lat in self._latency.items()},
            }

    def admit(
        self, api: str, key: str | None, bucket: str | None = None, action: str | None = None
    ) -> Admission:
        """Decide how to treat one API call: latency, rate limit, scripted or random fault.

        `key` is the payment id or contact e-mail (None if unknown); `bucket` is the
        GoHighLevel location the rate limit counts against; `action` names the call
        (`add_tags`, `remove_tags`): a fault set for `<key>#<action>` hits only that call.
        """
        with self._lock:
            latency = self._latency.get(api)
            sleep = latency.draw() if latency else 0.0
            headers: dict[str, str] = {}
            if api == GOHIGHLEVEL:
                # Every GHL answer carries the rate-limit headers, whatever its status.
                limiter = self._rate_limiter or self._call_counter
                allowed, _, remaining, daily = limiter.hit(
                    bucket or "", RealClock.monotonic(), RealClock.time()
                )
                headers = limiter.headers(remaining, daily)
                if not allowed:
                    return rate_limited(sleep, headers)
            fault = self._take_fault(api, key, action)
            outcome = "ok"
            if fault is not None:
                sleep += fault.delay
                if fault.status:
                    retry_after = fault.retry_after
                    if retry_after is None and fault.status == 429 and api == MERCADOPAGO:
                        retry_after = 1  # GoHighLevel documents no Retry-After
                    return Admission(sleep, fault.status, retry_after, "fault", headers)
                outcome = "delayed"
            failures = self._random.get(api)
            if failures is not None and failures.draw():
                retry_after = 1 if failures.status == 429 and api == MERCADOPAGO else None
                return Admission(sleep, failures.status, retry_after, "random_failure", headers)
            return Admission(sleep, None, None, outcome, headers)

    def _take_fault(self, api: str, key: str | None, action: str | None = None) -> Fault | None:
        """The fault for this key and action, else this key, else the wildcard one,
        counted as used once."""
        candidates = [WILDCARD] if key is None else [self._fault_key(api, key), WILDCARD]
        if key is not None and action:
            candidates.insert(0, self._fault_key(api, f"{key}#{action}"))
        for candidate in candidates:
            fault = self._faults.get((api, candidate))
            if fault is not None:
                # Copy before consuming so the caller sees the fault as it applied.
                applied = copy.copy(fault)
                fault.consume()
                if fault.exhausted:
                    del self._faults[(api, candidate)]
                return applied
        return None

    # -- call log ------------------------------------------------------------------

    def record_call(
        self,
        *,
        api: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        status: int,
        body: Any,
        key: str | None,
        outcome: str,
        started: float,
        token: str | None = None,
    ) -> None:
        """Append one API call to the log; `token` is its bearer token (which tenant called:
        the sandbox's tokens are no secrets)."""
        entry = {
            "time": started,
            "duration": round(RealClock.time() - started, 6),
            "api": api,
            "method": method,
            "path": path,
            "query": dict(query),
            "status": status,
            "json": copy.deepcopy(body),
            "key": key,
            "token": token,
            "outcome": outcome,
        }
        with self._lock:
            self._calls.append(entry)

    def calls(
        self,
        api: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the logged API calls, oldest first, optionally filtered."""
        api = normalise_api(api) if api else None
        with self._lock:
            selected = [
                call
                for call in self._calls
                if (api is None or call["api"] == api)
                and (method is None or call["method"] == method.upper())
                and (path_contains is None or path_contains in call["path"])
            ]
            return copy.deepcopy(selected)

    def clear_calls(self) -> None:
        """Empty the call log only."""
        with self._lock:
            self._calls.clear()
