"""The retry policy and scheduling: a failed attempt's next try or its dead letter, and
handing a pending event's next attempt to Redis (now, or via rq-scheduler)."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis import RedisError
from sqlalchemy import or_, select, update

from . import queueing
from .claims import transition
from .extensions import db
from .metrics import ATTEMPTS, count_final
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from .timeutil import milliseconds_between, utcnow

logger = logging.getLogger(__name__)


def next_retry_delay(attempts_this_round: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next attempt after `attempts_this_round` failures; None if none is left."""
    delays = current_app.config["RETRY_DELAYS"]
    if attempts_this_round > len(delays):
        return None
    delay = float(delays[attempts_this_round - 1])
    return max(delay, float(retry_after)) if retry_after else delay


def fail_attempt(
    event_id: int,
    attempt: WebhookAttempt,
    error: str,
    *,
    retryable: bool,
    retry_after: float | None = None,
    immediate: bool = False,
    outcome_if_retry: str = AttemptOutcome.RETRY,
    conditions: tuple[Any, ...] = (),
    counted: bool = True,
) -> str:
    """Record a failed attempt and apply the retry policy: schedule the next or dead-letter.

    `immediate` retries at once (the attempt was lost, not refused: nothing to
    wait for); `conditions` further restrict the claim check (the reconciler
    requires the lease to be expired still). An attempt not `counted` (another worker
    held a lock it needed) is tried again after `retry_after`, whatever the budget left,
    and leaves the budget as it was (it joins `attempts_at_replay`).
    """
    now = utcnow()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    attempt.error = error
    attempt.retryable = retryable
    if not counted:
        # A little jitter: the workers that found one contact busy do not all come back at once.
        delay: float | None = (retry_after or 0.0) + random.uniform(0.0, 1.0)
    elif retryable:
        delay = next_retry_delay(event.attempts_this_round, retry_after)
    else:
        delay = None
    if delay is None:
        outcome, values = AttemptOutcome.FAILED, {"status": EventStatus.FAILED, "processed_at": now}
    else:
        delay = 0.0 if immediate else delay
        next_at = now + timedelta(seconds=delay)
        values = {"status": EventStatus.PENDING, "next_retry_at": next_at}
        outcome = outcome_if_retry
        if not counted:
            outcome = AttemptOutcome.BUSY
            values["attempts_at_replay"] = WebhookEvent.attempts_at_replay + 1
    owned = transition(
        event_id, attempt.number, *conditions, last_error=error, locked_until=None, **values
    )
    finish_attempt(attempt, now, outcome if owned else AttemptOutcome.FAILED)
    db.session.commit()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    if not owned:
        return event.status
    if event.status == EventStatus.FAILED:
        count_final(event.status, event.received_at, event.processed_at)
        reason = "not retryable" if not retryable else "retries exhausted"
        logger.error(
            "event %s attempt %s failed (%s), dead-lettered: %s",
            event_id,
            attempt.number,
            reason,
            error,
        )
    else:
        log = logger.warning if counted else logger.info  # busy: nothing went wrong
        log(
            "event %s attempt %s failed, retry in %.0fs: %s", event_id, attempt.number, delay, error
        )
        schedule_attempt(event)
    return event.status


def finish_attempt(attempt: WebhookAttempt, now: datetime, outcome: str) -> None:
    """Close the attempt's row (the caller commits) and count its outcome."""
    attempt.finished_at = now
    attempt.duration_ms = milliseconds_between(attempt.started_at, now)
    attempt.outcome = outcome
    ATTEMPTS.labels(outcome).inc()


def postpone(event_id: int, seconds: float, busy: str | None) -> str:
    """Leave an unclaimed event `pending` a little longer: another event holds the lock
    `busy` (`payment:<id>`) of its resource."""
    due = utcnow() + timedelta(seconds=seconds)
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PENDING)
        .values(next_retry_at=due)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    what = (busy or "its resource").replace(":", " ", 1)  # "payment 123"
    logger.info("event %s: %s is busy; postponed %.0fs", event_id, what, seconds)
    if event.status == EventStatus.PENDING:
        schedule_attempt(event, suffix=f"-postponed-{time.time_ns()}")
    return event.status


def schedule_attempt(event: WebhookEvent, suffix: str = "") -> bool:
    """Hand a pending event's next attempt to Redis: now if it is due, else via rq-scheduler.

    `suffix` makes the job id differ from the running job's (a job re-queueing
    the attempt it could not start must not overwrite itself). Returns False
    when Redis is unreachable; the event then stays `pending` with its due time
    in the database, and is picked up from there.
    """
    attempt = event.attempts + 1
    try:
        if event.next_retry_at is None or event.next_retry_at <= utcnow():
            queueing.enqueue_event(event.id, attempt, suffix, event.type, event.account_id)
        else:
            queueing.schedule_event(
                event.id, attempt, event.next_retry_at, suffix, event.type, event.account_id
            )
    except RedisError as exc:
        logger.warning(
            "event %s: Redis unavailable, attempt %s not queued: %s", event.id, attempt, exc
        )
        return False
    return True


def due_events(limit: int = 100, now: datetime | None = None) -> list[int]:
    """Ids of pending events whose due time has come, oldest first."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(WebhookEvent.id)
            .where(
                WebhookEvent.status == EventStatus.PENDING,
                or_(WebhookEvent.next_retry_at.is_(None), WebhookEvent.next_retry_at <= now),
            )
            .order_by(WebhookEvent.next_retry_at, WebhookEvent.id)
            .limit(limit)
        )
    )
