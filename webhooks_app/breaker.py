"""Circuit breakers on MercadoPago and GoHighLevel, shared by every worker through Redis.

Every upstream call reports its outcome here (`record_call`, from
metrics.observe_api_call). BREAKER_THRESHOLD failures in a row within
BREAKER_WINDOW seconds — transient ones: 5xx, 408, timeouts, refused connections —
open the upstream's breaker: attempts that need it wait, unclaimed and uncounted,
until its cool-down ends (BREAKER_COOLDOWN, doubling after each failed probe up to
BREAKER_MAX_COOLDOWN). Then the breaker is half-open: one attempt, chosen through
Redis (SET NX), is the probe; its call to the upstream closes the breaker when it
answers, or re-opens it for twice as long. 401/403 (a wrong token) open it after
BREAKER_AUTH_THRESHOLD in a row and pause the stage in the database: it stays open
until an operator resumes it. A 404, a 4xx about the request or a 429 is not an
upstream failure: the upstream answered.

The state is in Redis, so it survives a worker's crash and every worker shares it.
When Redis is unreachable the breakers count as closed — attempts run, as they
would without breakers — and that is logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app, has_app_context
from prometheus_client.core import GaugeMetricFamily
from redis import Redis, RedisError

from . import queueing
from .metrics import BREAKER_OPENINGS
from .pausing import GOHIGHLEVEL, MERCADOPAGO, UPSTREAMS
from .services.errors import ApiError, RateLimitedError, TransientApiError

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
GAUGE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
NAMES = {MERCADOPAGO: "MercadoPago", GOHIGHLEVEL: "GoHighLevel"}
AUTH_STATUSES = frozenset({401, 403})
BREAKER_ACTOR = "circuit-breaker"
# While a probe runs, the other attempts that need the upstream wait this long, then look again.
PROBE_WAIT = 2.0
SUCCESS, FAILURE, AUTH = "success", "failure", "auth"
_TOKENS: dict[str, str] = {
    MERCADOPAGO: "MP_ACCESS_TOKEN",
    GOHIGHLEVEL: "GHL_API_TOKEN and GHL_LOCATION_ID",
}

# The probes this thread's attempt holds, {upstream: token}: one attempt per thread.
_held = threading.local()


def _key(upstream: str, part: str = "") -> str:
    return f"webhooks:breaker:{upstream}" + (f":{part}" if part else "")


@dataclass
class Breaker:
    """An open breaker as stored in Redis (no key: closed). Times are Unix seconds."""

    upstream: str
    opened_at: float
    open_until: float | None  # None: until an operator resumes
    cooldown: float
    reason: str
    needs_operator: bool = False

    def state(self, now: float) -> str:
        if self.needs_operator or self.open_until is None or now < self.open_until:
            return OPEN
        return HALF_OPEN

    def dump(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, raw: bytes | str | None) -> Breaker | None:
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            logger.warning("breaker state unreadable, taken as closed: %r", raw)
            return None


def enabled() -> bool:
    return current_app.config["BREAKER_THRESHOLD"] > 0


def classify(exc: BaseException | None) -> str | None:
    """What a call's outcome says about the upstream: up, failing, refusing our
    credentials, or nothing (a 429: we were too fast; an error that is not the API's)."""
    if exc is None:
        return SUCCESS
    if isinstance(exc, RateLimitedError) or not isinstance(exc, ApiError):
        return None
    if exc.status_code in AUTH_STATUSES:
        return AUTH
    if isinstance(exc, TransientApiError):
        return FAILURE
    return SUCCESS  # a 404, a 400/422 about this request: the upstream answered


def load(upstreams: Iterable[str], connection: Redis | None = None) -> dict[str, Breaker | None]:
    """The breakers of these upstreams, in one Redis round trip. Raises RedisError."""
    upstreams = list(upstreams)
    connection = connection or queueing.get_redis()
    raws = connection.mget([_key(name) for name in upstreams])
    return {name: Breaker.load(raw) for name, raw in zip(upstreams, raws, strict=True)}


# -- outcomes of calls --------------------------------------------------------


def record_call(upstream: str, exc: BaseException | None) -> None:
    """Count one call's outcome (metrics.observe_api_call calls this); never raises."""
    if not has_app_context() or upstream not in UPSTREAMS or not enabled():
        return
    kind = classify(exc)
    if kind is None:
        return
    try:
        _record(queueing.get_redis(), upstream, kind, exc)
    except RedisError as error:
        logger.warning("breaker %s: Redis unavailable, outcome not counted: %s", upstream, error)


def _record(connection: Redis, upstream: str, kind: str, exc: BaseException | None) -> None:
    probing = _probes().pop(upstream, None) is not None
    if kind == SUCCESS:
        if probing:
            close(upstream, "the probe call succeeded", connection)
        else:  # failures must come in a row
            connection.delete(_key(upstream, "failures"), _key(upstream, "auth-failures"))
        return
    auth = kind == AUTH
    if probing:
        _open(connection, upstream, exc, auth=auth, after_probe=True)
        return
    config = current_app.config
    threshold = config["BREAKER_AUTH_THRESHOLD"] if auth else config["BREAKER_THRESHOLD"]
    if threshold <= 0:
        return
    counter = _key(upstream, "auth-failures" if auth else "failures")
    with connection.pipeline(transaction=False) as pipe:
        # The window starts at the first failure of the run; a success ends the run.
        pipe.set(counter, 0, ex=max(1, int(config["BREAKER_WINDOW"])), nx=True)
        pipe.incr(counter)
        count = pipe.execute()[1]
    if count >= threshold:
        _open(connection, upstream, exc, auth=auth, count=count)


def _open(
    connection: Redis,
    upstream: str,
    exc: BaseException | None,
    *,
    auth: bool,
    after_probe: bool = False,
    count: int = 0,
) -> None:
    config = current_app.config
    now = time.time()
    error = str(exc)[:300] if exc is not None else "unknown error"
    previous = Breaker.load(connection.get(_key(upstream)))
    if after_probe and previous is not None and not auth:
        cooldown = min(previous.cooldown * 2, config["BREAKER_MAX_COOLDOWN"])
        opened_at = previous.opened_at
    else:
        cooldown, opened_at = config["BREAKER_COOLDOWN"], now
    what = f"{count} in a row" if count else "the probe call failed"
    breaker = Breaker(
        upstream,
        opened_at,
        None if auth else now + cooldown,
        cooldown,
        f"{what}: {error}",
        needs_operator=auth,
    )
    if after_probe or auth:
        connection.set(_key(upstream), breaker.dump())
        new_opening = previous is None
        alert = auth and (previous is None or not previous.needs_operator)
    else:  # several workers can cross the threshold at once: one opens it
        new_opening = alert = bool(connection.set(_key(upstream), breaker.dump(), nx=True))
    connection.delete(
        _key(upstream, "failures"), _key(upstream, "auth-failures"), _key(upstream, "probe")
    )
    if new_opening:
        with connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(_key(upstream, "stats"), "openings", 1)
            pipe.hset(_key(upstream, "stats"), "last_opened_at", now)
            pipe.execute()
        BREAKER_OPENINGS.labels(upstream).inc()
    if after_probe and not auth:
        logger.warning(
            "breaker %s: probe failed, open %.0fs more: %s", upstream, cooldown, breaker.reason
        )
    elif new_opening or alert:
        logger.error("breaker %s opened: %s", upstream, breaker.reason)
    if auth and alert:
        _pause_for_operator(upstream, breaker.reason)
    if alert:
        _alert(upstream, breaker)


def _pause_for_operator(upstream: str, reason: str) -> None:
    """Record the credential failure as a pause of the stage: it survives a Redis flush,
    shows in the admin banner, and only an operator's resume lifts it."""
    from .extensions import db
    from .pausing import pause

    text = (
        f"{NAMES[upstream]} refused our credentials ({reason}). Check "
        f"{_TOKENS[upstream]}, then resume the {upstream} stage."
    )
    try:
        pause(upstream, text[:500], BREAKER_ACTOR)
    except Exception:  # noqa: BLE001 - the Redis state still holds the attempts
        db.session.rollback()
        logger.exception("breaker %s: the stage could not be paused in the database", upstream)


def _alert(upstream: str, breaker: Breaker) -> None:
    from .alerts import send_alert

    name = NAMES[upstream]
    if breaker.needs_operator:
        message = (
            f"{name} refuses our credentials: {breaker.reason}. Processing that needs "
            f"{name} is paused until an operator acts: fix {_TOKENS[upstream]}, then "
            f"`flask webhooks resume --stage {upstream}` (or the admin's Resume button). "
            "Events wait pending; none is dead-lettered meanwhile."
        )
    else:
        message = (
            f"{name} is failing ({breaker.reason}). Its circuit breaker is open: events "
            f"wait pending instead of spending retries, and one probe call every "
            f"{breaker.cooldown:.0f}s or more (up to "
            f"{current_app.config['BREAKER_MAX_COOLDOWN']:.0f}s) checks whether it is back; "
            "processing resumes by itself when it answers."
        )
    send_alert(message)


def close(upstream: str, why: str, connection: Redis | None = None) -> bool:
    """Close the breaker (the probe succeeded, or an operator resumed); False if it was closed."""
    connection = connection or queueing.get_redis()
    if not connection.delete(_key(upstream)):
        return False
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        pipe.delete(
            _key(upstream, "failures"), _key(upstream, "auth-failures"), _key(upstream, "probe")
        )
        pipe.hincrby(_key(upstream, "stats"), "closings", 1)
        pipe.hset(_key(upstream, "stats"), "last_closed_at", now)
        pipe.execute()
    logger.warning("breaker %s closed: %s", upstream, why)
    return True


def reset(upstream: str, actor: str) -> bool:
    """An operator's resume: close the breaker; never raises (Redis down: nothing to reset)."""
    try:
        return close(upstream, f"resumed by {actor}")
    except RedisError as exc:
        logger.warning("breaker %s: Redis unavailable, not reset: %s", upstream, exc)
        return False


# -- probes -------------------------------------------------------------------


def _probes() -> dict[str, str]:
    if not hasattr(_held, "probes"):
        _held.probes = {}
    return _held.probes


def take_probe(upstream: str, connection: Redis) -> bool:
    """Become the one attempt that probes a half-open upstream (SET NX, expiring)."""
    token = uuid.uuid4().hex
    ttl = max(1, int(current_app.config["LEASE_SECONDS"]))
    if not connection.set(_key(upstream, "probe"), token, nx=True, ex=ttl):
        return False
    _probes()[upstream] = token
    logger.info("breaker %s: this attempt is the probe", upstream)
    return True


def release_probes(connection: Redis | None = None) -> None:
    """Give back probes the previous attempt of this thread took but never used (it
    failed before calling the upstream, or did not need it), so another can probe."""
    probes = _probes()
    if not probes:
        return
    connection = connection or queueing.get_redis()
    for upstream, token in list(probes.items()):
        try:
            if connection.get(_key(upstream, "probe")) == token.encode():
                connection.delete(_key(upstream, "probe"))
        except RedisError as exc:  # it expires by itself
            logger.warning("breaker %s: probe not released: %s", upstream, exc)
        probes.pop(upstream, None)


# -- reading ------------------------------------------------------------------


def states_for_display() -> dict[str, dict[str, Any]]:
    """Each upstream's breaker for the API, admin and CLI (state `unknown` if Redis is down)."""
    now = time.time()
    try:
        connection = queueing.get_redis()
        breakers = load(UPSTREAMS, connection)
        with connection.pipeline(transaction=False) as pipe:
            for upstream in UPSTREAMS:
                pipe.hgetall(_key(upstream, "stats"))
                pipe.get(_key(upstream, "failures"))
            answers = pipe.execute()
    except RedisError as exc:
        return {name: _unknown(str(exc)) for name in UPSTREAMS}
    shown = {}
    for index, upstream in enumerate(UPSTREAMS):
        stats = {k.decode(): v.decode() for k, v in answers[2 * index].items()}
        failures = answers[2 * index + 1]
        breaker = breakers[upstream]
        shown[upstream] = {
            "state": breaker.state(now) if breaker else CLOSED,
            "opened_at": _iso(breaker.opened_at) if breaker else None,
            "open_until": _iso(breaker.open_until) if breaker else None,
            "open_seconds": round(now - breaker.opened_at, 1) if breaker else 0.0,
            "cooldown_seconds": breaker.cooldown if breaker else None,
            "reason": breaker.reason if breaker else None,
            "needs_operator": bool(breaker and breaker.needs_operator),
            "recent_failures": int(failures or 0),
            "openings": int(stats.get("openings", 0)),
            "closings": int(stats.get("closings", 0)),
            "error": None,
        }
    return shown


def _unknown(error: str) -> dict[str, Any]:
    return {
        "state": "unknown",
        "opened_at": None,
        "open_until": None,
        "open_seconds": None,
        "cooldown_seconds": None,
        "reason": None,
        "needs_operator": False,
        "recent_failures": None,
        "openings": None,
        "closings": None,
        "error": error,
    }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class BreakerCollector:
    """The breakers' state (0 closed, 1 open, 2 half-open) and the current opening's age,
    read from Redis at scrape time (left out while Redis is down)."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.app.app_context():
            try:
                breakers = load(UPSTREAMS)
            except RedisError:
                return
        now = time.time()
        state = GaugeMetricFamily(
            "webhooks_breaker_state",
            "Circuit breaker per upstream: 0 closed, 1 open, 2 half-open",
            labels=["upstream"],
        )
        age = GaugeMetricFamily(
            "webhooks_breaker_open_seconds",
            "How long the upstream's breaker has been open (0 when closed)",
            labels=["upstream"],
        )
        for upstream, breaker in breakers.items():
            state.add_metric(
                [upstream], GAUGE_VALUES[breaker.state(now)] if breaker else GAUGE_VALUES[CLOSED]
            )
            age.add_metric([upstream], now - breaker.opened_at if breaker else 0.0)
        yield state
        yield age
