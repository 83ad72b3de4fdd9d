"""The gate before a claim: an attempt waits while a stage its event needs is held.

Held means paused by an operator (pausing.py) or behind an open circuit breaker
(breaker.py). A held attempt does not start: no claim, no `webhook_attempts` row,
the attempt count and the retry budget untouched; the event stays `pending`.

- Paused: the job is dropped and the event left as it is; resuming enqueues it
  (pausing.drain), and the reconciler leaves it alone meanwhile (`held_by_pause`).
- Breaker open: the event is due again when the cool-down ends, and its job is
  scheduled for then.
- Breaker half-open: one attempt, with retries left so that a failed probe never
  dead-letters its event, becomes the probe; the others wait PROBE_WAIT seconds.

Only the event's account's breakers count (its MercadoPago application, its GoHighLevel
location): another account's outage never holds it.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from redis import RedisError
from sqlalchemy import Row, select, update

from . import accounts, breaker, pausing, queueing
from .accounts import AccountSettings
from .extensions import db
from .models import EventStatus, WebhookEvent

logger = logging.getLogger(__name__)

_events = WebhookEvent.__table__


def held_by_pause(event_type: str) -> bool:
    """Whether a pause holds events of this type (the reconciler's question; cached)."""
    return pausing.holding_stage(event_type) is not None


def processing_gate(event: Row[Any]) -> str | None:
    """None: claim and run the attempt. Else the event's status, left pending, unclaimed.

    `event` is the attempt's row of the event (id, type). Ends any transaction it
    opened: the claim that follows needs none open.
    """
    try:
        return _gate(event)
    finally:
        if db.session().in_transaction():
            db.session.commit()


def _gate(event: Row[Any]) -> str | None:
    stage = pausing.holding_stage(event.type)
    if stage is not None:
        logger.info("event %s waits: processing is paused (stage %s)", event.id, stage)
        return EventStatus.PENDING
    needed = pausing.stages_needed(event.type)
    if not needed or not breaker.enabled():
        return None
    account = _account_of(event)
    try:
        connection = queueing.get_redis()
        breaker.release_probes(connection)
        breakers = breaker.load(needed, connection, account)
        now = time.time()
        open_until = [
            (b.open_until or now + current_app.config["BREAKER_MAX_COOLDOWN"])
            for b in breakers.values()
            if b is not None and b.state(now) == breaker.OPEN
        ]
        if open_until:
            stages = ", ".join(name for name, b in breakers.items() if b is not None)
            return _wait(event, max(open_until), f"breaker open ({stages})")
        half_open = [name for name, b in breakers.items() if b is not None]
        if not half_open:
            return None
        if not _has_retries_left(event.id):
            return _wait(event, _probe_slot(now), "breaker half-open; not a probe")
        for name in half_open:
            if not breaker.take_probe(name, connection, account):
                breaker.release_probes(connection)
                return _wait(event, _probe_slot(now), f"breaker half-open ({name}), probing")
    except RedisError as exc:  # fail closed: run the attempt as if there were no breakers
        logger.warning("event %s: breaker state unavailable (%s); going on", event.id, exc)
    return None


def _account_of(event: Row[Any]) -> AccountSettings | None:
    """The event's account, whose breakers hold it (None: the default account's)."""
    account_id = getattr(event, "account_id", accounts.DEFAULT_ACCOUNT_ID)
    if account_id == accounts.DEFAULT_ACCOUNT_ID:
        return None
    if accounts.current_account_id() == account_id:  # the attempt's (run_attempt sets it)
        return accounts.current_account()
    return accounts.by_id(account_id)


def _has_retries_left(event_id: int) -> bool:
    """A probe that fails must leave its event a retry (it never dead-letters it)."""
    row = db.session.execute(
        select(WebhookEvent.attempts, WebhookEvent.attempts_at_replay).where(
            WebhookEvent.id == event_id
        )
    ).one()
    return row.attempts - row.attempts_at_replay < len(current_app.config["RETRY_DELAYS"])


def _probe_slot(now: float) -> float:
    """When to look again while a probe runs: on a PROBE_WAIT grid, so that every job of
    one event waiting in the same slot has the same id (see `_wait`)."""
    return math.ceil((now + breaker.PROBE_WAIT) / breaker.PROBE_WAIT) * breaker.PROBE_WAIT


def _wait(event: Row[Any], until: float, why: str) -> str:
    """Leave the event pending, due at `until` (Unix seconds), with a job scheduled for then.

    The job's id names the due time: two jobs of one event held until the same time (a
    reconciler's re-enqueue beside the scheduled one) become one job, not two chains.
    """
    due = datetime.fromtimestamp(until, UTC).replace(tzinfo=None)
    held = db.session.execute(
        update(_events)
        .where(_events.c.id == event.id, _events.c.status == EventStatus.PENDING)
        .values(next_retry_at=due)
        .returning(_events.c.attempts)
    ).one_or_none()
    db.session.commit()
    if held is None:  # taken meanwhile (a replay, another worker): nothing to hold
        return db.session.get(WebhookEvent, event.id, populate_existing=True).status
    logger.info("event %s waits %.1fs: %s", event.id, until - time.time(), why)
    try:
        queueing.schedule_event(
            event.id,
            held.attempts + 1,
            due,
            f"-held-{int(until * 1000)}",
            event.type,
            event.account_id,
        )
    except RedisError as exc:  # due in the database: the reconciler enqueues it
        logger.warning("event %s: Redis unavailable, wait not scheduled: %s", event.id, exc)
    return EventStatus.PENDING


def catch_up_held() -> str | None:
    """Why the current account's catch-up must not call MercadoPago now (the stage paused,
    the account's breaker open), or None."""
    paused = pausing.paused_stages(fresh=True)
    for stage in (pausing.ALL, pausing.MERCADOPAGO):
        if stage in paused:
            return f"processing is paused (stage {stage}): {paused[stage]['reason']}"
    if not breaker.enabled():
        return None
    try:
        found = breaker.load([pausing.MERCADOPAGO], account=breaker.calling_account())[
            pausing.MERCADOPAGO
        ]
    except RedisError:
        return None  # as the attempts do: no Redis, no breaker
    if found is not None and found.state(time.time()) == breaker.OPEN:
        return f"the MercadoPago circuit breaker is open: {found.reason}"
    return None
