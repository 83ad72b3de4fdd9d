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

Breakers are per upstream instance (issue 18): the default account's are the keys of
before accounts (`webhooks:breaker:gohighlevel`); another account's MercadoPago breaker is
its own (`…:mercadopago@account-7`: its own application and token) and its GoHighLevel one
is its location's (`…:gohighlevel@location-<id>`), so one merchant's outage or wrong token
never holds another's events. A 401/403 of another account opens its breaker until an
operator resumes that account (`resume --account <slug>`); it does not pause the stage
in the database, which would stop every account.

The state is in Redis, so it survives a worker's crash and every worker shares it.
When Redis is unreachable the breakers count as closed — attempts run, as they
would without breakers — and that is logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from flask import current_app, has_app_context
from redis import Redis, RedisError

from . import accounts, queueing
from .accounts import AccountSettings
from .breaker_alerts import BREAKER_ACTOR, NAMES, alert_operator, pause_for_operator  # noqa: F401
from .metrics import BREAKER_OPENINGS
from .pausing import GOHIGHLEVEL, UPSTREAMS
from .services.errors import ApiError, RateLimitedError, TransientApiError

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
GAUGE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
AUTH_STATUSES = frozenset({401, 403})
# While a probe runs, the other attempts that need the upstream wait this long, then look again.
PROBE_WAIT = 2.0
SUCCESS, FAILURE, AUTH = "success", "failure", "auth"

# The probes this thread's attempt holds, {breaker name: token}: one attempt per thread.
_held = threading.local()
KEY_PREFIX = "webhooks:breaker:"
# What a scope may hold in a Redis key: `:` separates the key's parts, `@` the scope.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _key(name: str, part: str = "") -> str:
    """`name` is the upstream, or `upstream@scope` for a breaker of another account."""
    return f"{KEY_PREFIX}{name}" + (f":{part}" if part else "")


def scope_of(upstream: str, account: AccountSettings | None) -> str:
    """Whose breaker of `upstream` an account's calls count in: "" (the default account's,
    the keys of before accounts), the account's own for MercadoPago, its location's for
    GoHighLevel (whose limits and outages are per location)."""
    if account is None or account.id == accounts.DEFAULT_ACCOUNT_ID:
        return ""
    location = account.config.get("GHL_LOCATION_ID")
    if upstream == GOHIGHLEVEL and location:
        return location_scope(str(location))
    return f"account-{account.id}"


def location_scope(location: str) -> str:
    """The scope of a GoHighLevel location's breaker."""
    return "location-" + _UNSAFE.sub("_", location)[:64]


def breaker_name(upstream: str, scope: str = "") -> str:
    return f"{upstream}@{scope}" if scope else upstream


def _name(upstream: str, account: AccountSettings | None) -> str:
    return breaker_name(upstream, scope_of(upstream, account))


def calling_account() -> AccountSettings | None:
    """The account whose attempt (or catch-up) is calling; None: the default one."""
    if accounts.current_account_id() == accounts.DEFAULT_ACCOUNT_ID:
        return None  # no database read for the single-merchant case
    return accounts.current_account()


@dataclass
class Breaker:
    """An open breaker as stored in Redis (no key: closed). Times are Unix seconds."""

    upstream: str
    opened_at: float
    open_until: float | None  # None: until an operator resumes
    cooldown: float
    reason: str
    needs_operator: bool = False
    scope: str = ""  # "": the default account's breaker
    account: str | None = None  # the slug of the account whose calls opened it

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


def load(
    upstreams: Iterable[str],
    connection: Redis | None = None,
    account: AccountSettings | None = None,
) -> dict[str, Breaker | None]:
    """The account's breakers of these upstreams (default: the default account's), by
    upstream, in one Redis round trip. Raises RedisError."""
    upstreams = list(upstreams)
    connection = connection or queueing.get_redis()
    raws = connection.mget([_key(_name(name, account)) for name in upstreams])
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
        _record(queueing.get_redis(), _Target(upstream, calling_account()), kind, exc)
    except RedisError as error:
        logger.warning("breaker %s: Redis unavailable, outcome not counted: %s", upstream, error)


@dataclass(frozen=True)
class _Target:
    """One breaker: an upstream as one account sees it."""

    upstream: str
    account: AccountSettings | None = None

    @property
    def scope(self) -> str:
        return scope_of(self.upstream, self.account)

    @property
    def name(self) -> str:
        return breaker_name(self.upstream, self.scope)

    @property
    def slug(self) -> str | None:
        return self.account.slug if self.account is not None else None


def _record(connection: Redis, target: _Target, kind: str, exc: BaseException | None) -> None:
    name = target.name
    probing = _probes().pop(name, None) is not None
    if kind == SUCCESS:
        if probing:
            close(target.upstream, "the probe call succeeded", connection, target.account)
        else:  # failures must come in a row
            connection.delete(_key(name, "failures"), _key(name, "auth-failures"))
        return
    auth = kind == AUTH
    if probing:
        _open(connection, target, exc, auth=auth, after_probe=True)
        return
    config = current_app.config
    threshold = config["BREAKER_AUTH_THRESHOLD"] if auth else config["BREAKER_THRESHOLD"]
    if threshold <= 0:
        return
    counter = _key(name, "auth-failures" if auth else "failures")
    with connection.pipeline(transaction=False) as pipe:
        # The window starts at the first failure of the run; a success ends the run.
        pipe.set(counter, 0, ex=max(1, int(config["BREAKER_WINDOW"])), nx=True)
        pipe.incr(counter)
        count = pipe.execute()[1]
    if count >= threshold:
        _open(connection, target, exc, auth=auth, count=count)


def _open(
    connection: Redis,
    target: _Target,
    exc: BaseException | None,
    *,
    auth: bool,
    after_probe: bool = False,
    count: int = 0,
) -> None:
    config = current_app.config
    now = time.time()
    upstream, name = target.upstream, target.name
    error = str(exc)[:300] if exc is not None else "unknown error"
    previous = Breaker.load(connection.get(_key(name)))
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
        scope=target.scope,
        account=target.slug,
    )
    if after_probe or auth:
        connection.set(_key(name), breaker.dump())
        new_opening = previous is None
        alert = auth and (previous is None or not previous.needs_operator)
    else:  # several workers can cross the threshold at once: one opens it
        new_opening = alert = bool(connection.set(_key(name), breaker.dump(), nx=True))
    connection.delete(_key(name, "failures"), _key(name, "auth-failures"), _key(name, "probe"))
    if new_opening:
        with connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(_key(name, "stats"), "openings", 1)
            pipe.hset(_key(name, "stats"), "last_opened_at", now)
            pipe.execute()
        BREAKER_OPENINGS.labels(upstream).inc()
    if after_probe and not auth:
        logger.warning(
            "breaker %s: probe failed, open %.0fs more: %s", name, cooldown, breaker.reason
        )
    elif new_opening or alert:
        logger.error("breaker %s opened: %s", name, breaker.reason)
    # The default account's credentials are the deployment's: their failure pauses the
    # stage. Another account's only holds that account (its breaker, in Redis).
    if auth and alert and not target.scope:
        pause_for_operator(upstream, breaker.reason)
    if alert:
        alert_operator(upstream, breaker)


def close(
    upstream: str,
    why: str,
    connection: Redis | None = None,
    account: AccountSettings | None = None,
) -> bool:
    """Close the account's breaker (the probe succeeded, or an operator resumed); False if
    it was closed."""
    connection = connection or queueing.get_redis()
    name = _name(upstream, account)
    if not connection.delete(_key(name)):
        return False
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        pipe.delete(_key(name, "failures"), _key(name, "auth-failures"), _key(name, "probe"))
        pipe.hincrby(_key(name, "stats"), "closings", 1)
        pipe.hset(_key(name, "stats"), "last_closed_at", now)
        pipe.execute()
    logger.warning("breaker %s closed: %s", name, why)
    return True


def reset(upstream: str, actor: str, account: AccountSettings | None = None) -> bool:
    """An operator's resume: close the account's breaker (default: the default account's);
    never raises (Redis down: nothing to reset)."""
    try:
        return close(upstream, f"resumed by {actor}", account=account)
    except RedisError as exc:
        logger.warning("breaker %s: Redis unavailable, not reset: %s", upstream, exc)
        return False


# -- probes -------------------------------------------------------------------


def _probes() -> dict[str, str]:
    if not hasattr(_held, "probes"):
        _held.probes = {}
    return _held.probes


def take_probe(upstream: str, connection: Redis, account: AccountSettings | None = None) -> bool:
    """Become the one attempt that probes the account's half-open breaker (SET NX, expiring)."""
    token = uuid.uuid4().hex
    ttl = max(1, int(current_app.config["LEASE_SECONDS"]))
    name = _name(upstream, account)
    if not connection.set(_key(name, "probe"), token, nx=True, ex=ttl):
        return False
    _probes()[name] = token
    logger.info("breaker %s: this attempt is the probe", name)
    return True


def release_probes(connection: Redis | None = None) -> None:
    """Give back probes the previous attempt of this thread took but never used (it
    failed before calling the upstream, or did not need it), so another can probe."""
    probes = _probes()
    if not probes:
        return
    connection = connection or queueing.get_redis()
    for name, token in list(probes.items()):
        try:
            if connection.get(_key(name, "probe")) == token.encode():
                connection.delete(_key(name, "probe"))
        except RedisError as exc:  # it expires by itself
            logger.warning("breaker %s: probe not released: %s", name, exc)
        probes.pop(name, None)


# The display and the Prometheus collector (their own module), under their old names.
from .breaker_display import BreakerCollector, states_for_display  # noqa: E402, F401
