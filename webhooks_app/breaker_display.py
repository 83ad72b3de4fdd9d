"""The circuit breakers as the API, admin, CLI and Prometheus show them (breaker.py).

The default account's breakers are keyed by upstream (`mercadopago`, `gohighlevel`), as
before accounts. Another account's that exist in Redis (open, or opened once: their
counts stay) follow as `<upstream>@<scope>` (`gohighlevel@location-abc`,
`mercadopago@account-7`), each naming the accounts it holds (`accounts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from redis import Redis, RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import queueing
from .breaker import CLOSED, GAUGE_VALUES, KEY_PREFIX, Breaker, _key, breaker_name, location_scope
from .pausing import UPSTREAMS

logger = logging.getLogger(__name__)


def scoped_breakers(connection: Redis) -> list[tuple[str, str]]:
    """(upstream, scope) of every other account's breaker with a key in Redis."""
    found = set()
    for raw in connection.scan_iter(match=f"{KEY_PREFIX}*@*", count=500):
        name = raw.decode().removeprefix(KEY_PREFIX).split(":", 1)[0]
        upstream, _, scope = name.partition("@")
        if upstream in UPSTREAMS and scope:
            found.add((upstream, scope))
    return sorted(found)


def _accounts_by_scope() -> dict[str, list[str]]:
    """The slugs of the accounts each scope holds (an account's own, its location's)."""
    from .accounts import Account
    from .extensions import db

    try:
        rows = db.session.execute(select(Account.id, Account.slug, Account.ghl_location_id)).all()
    except SQLAlchemyError as exc:  # the state still shows, without the accounts' names
        db.session.rollback()
        logger.warning("breakers: accounts unavailable: %s", exc)
        return {}
    scopes: dict[str, list[str]] = {}
    for row in rows:
        scopes.setdefault(f"account-{row.id}", []).append(row.slug)
        if row.ghl_location_id:
            scopes.setdefault(location_scope(row.ghl_location_id), []).append(row.slug)
    return scopes


def states_for_display() -> dict[str, dict[str, Any]]:
    """Each breaker for the API, admin and CLI (state `unknown` if Redis is down): the
    default account's by upstream, then the other accounts' that exist."""
    now = time.time()
    try:
        connection = queueing.get_redis()
        targets = [(upstream, "") for upstream in UPSTREAMS] + scoped_breakers(connection)
        with connection.pipeline(transaction=False) as pipe:
            for upstream, scope in targets:
                name = breaker_name(upstream, scope)
                pipe.get(_key(name))
                pipe.hgetall(_key(name, "stats"))
                pipe.get(_key(name, "failures"))
            answers = pipe.execute()
    except RedisError as exc:
        return {name: _unknown(str(exc), name) for name in UPSTREAMS}
    holders = _accounts_by_scope() if len(targets) > len(UPSTREAMS) else {}
    shown = {}
    for index, (upstream, scope) in enumerate(targets):
        raw, stats_raw, failures = answers[3 * index : 3 * index + 3]
        breaker = Breaker.load(raw)
        stats = {k.decode(): v.decode() for k, v in stats_raw.items()}
        shown[breaker_name(upstream, scope)] = {
            "upstream": upstream,
            "scope": scope or None,
            "accounts": holders.get(scope, []) if scope else ["default"],
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


def _unknown(error: str, upstream: str) -> dict[str, Any]:
    return {
        "upstream": upstream,
        "scope": None,
        "accounts": ["default"],
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
    read from Redis at scrape time (left out while Redis is down). The default account's
    are labelled by upstream, as before accounts; the other accounts' are a family of
    their own, labelled by upstream, scope and the accounts it holds."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.app.app_context():
            try:
                shown = states_for_display()
            except SQLAlchemyError:
                return
        if any(state["error"] for state in shown.values()):
            return
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
        account_state = GaugeMetricFamily(
            "webhooks_account_breaker_state",
            "Circuit breaker of another account's upstream instance (its MercadoPago "
            "application, its GoHighLevel location): 0 closed, 1 open, 2 half-open",
            labels=["upstream", "scope", "accounts"],
        )
        account_age = GaugeMetricFamily(
            "webhooks_account_breaker_open_seconds",
            "How long another account's breaker has been open (0 when closed)",
            labels=["upstream", "scope", "accounts"],
        )
        for shown_state in shown.values():
            value = GAUGE_VALUES[shown_state["state"]]
            seconds = shown_state["open_seconds"] or 0.0
            if shown_state["scope"] is None:
                state.add_metric([shown_state["upstream"]], value)
                age.add_metric([shown_state["upstream"]], seconds)
            else:
                labels = [
                    shown_state["upstream"],
                    shown_state["scope"],
                    ",".join(shown_state["accounts"]),
                ]
                account_state.add_metric(labels, value)
                account_age.add_metric(labels, seconds)
        yield from (state, age, account_state, account_age)
