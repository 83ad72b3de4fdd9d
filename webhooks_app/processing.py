"""Running attempts: claim an event, run its pipeline, record the outcome, schedule a retry.

`process_event` is the RQ job. It takes an event id, never an ORM object, and
is safe to run more than once for the same event: only the caller whose
conditional UPDATE moves the row from `pending` to `processing` does any work.
"""

from __future__ import annotations

import calendar
import logging
import os
import socket
import time
import traceback
from datetime import datetime, timedelta

from flask import current_app
from redis import RedisError
from rq import get_current_job
from sqlalchemy import or_, select, update

from . import queueing
from .extensions import db
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from .pipeline import run_pipeline
from .timeutil import utcnow

logger = logging.getLogger(__name__)

# rq-scheduler works in whole seconds and may fire up to a second early: a job
# arriving this close to its event's due time waits for it instead of being lost.
EARLY_ARRIVAL_GRACE = timedelta(seconds=5)


def process_event(event_id: int) -> str:
    """RQ job: run one attempt for an event if it is due. Returns the event's status after."""
    try:
        return run_attempt(event_id)
    finally:
        # Worker processes reuse one app context: never carry a session across jobs.
        db.session.remove()


def run_attempt(event_id: int) -> str:
    """Claim the event, run its pipeline once and record the result."""
    event = db.session.get(WebhookEvent, event_id)
    if event is None:
        logger.warning("event %s does not exist; job dropped", event_id)
        return "missing"
    if event.status != EventStatus.PENDING:
        logger.info("event %s is %s; nothing to do", event_id, event.status)
        return event.status
    now = utcnow()
    if event.next_retry_at is not None and event.next_retry_at > now:
        early = event.next_retry_at - now
        if early > EARLY_ARRIVAL_GRACE:
            _reschedule_early_job(event)
            return event.status
        time.sleep(early.total_seconds())

    if not claim_event(event_id):
        db.session.rollback()
        logger.info("event %s was claimed by someone else", event_id)
        return db.session.get(WebhookEvent, event_id, populate_existing=True).status

    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    attempt = WebhookAttempt(
        event_id=event.id, number=event.attempts, started_at=utcnow(), worker=_worker_name()
    )
    db.session.add(attempt)
    db.session.commit()
    logger.info("event %s attempt %s started", event.id, attempt.number)

    try:
        status = run_pipeline(event, renew_lease=lambda: renew_lease(event_id))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded; none escapes unrecorded
        db.session.rollback()
        return _record_failure(event_id, attempt.id, exc)
    return _record_success(event_id, attempt.id, status)


def claim_event(event_id: int) -> bool:
    """Atomically move a due `pending` event to `processing`; True if this caller won."""
    now = utcnow()
    result = db.session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status == EventStatus.PENDING,
            or_(
                WebhookEvent.next_retry_at.is_(None),
                WebhookEvent.next_retry_at <= now + EARLY_ARRIVAL_GRACE,
            ),
        )
        .values(
            status=EventStatus.PROCESSING,
            attempts=WebhookEvent.attempts + 1,
            next_retry_at=None,
            locked_until=now + _lease(),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def renew_lease(event_id: int) -> None:
    """Extend the claim of an event we are processing."""
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PROCESSING)
        .values(locked_until=utcnow() + _lease())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _record_success(event_id: int, attempt_id: int, status: str) -> str:
    now = utcnow()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    attempt = db.session.get(WebhookAttempt, attempt_id)
    _finish_attempt(
        attempt,
        now,
        AttemptOutcome.SUCCESS if status == EventStatus.SUCCESS else AttemptOutcome.IGNORED,
    )
    event.status = status
    event.processed_at = now
    event.locked_until = None
    event.last_error = None
    db.session.commit()
    logger.info("event %s attempt %s: %s", event.id, attempt.number, status)
    return status


def _record_failure(event_id: int, attempt_id: int, exc: Exception) -> str:
    now = utcnow()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    attempt = db.session.get(WebhookAttempt, attempt_id)
    retryable = bool(getattr(exc, "retryable", True))
    error = f"{type(exc).__name__}: {exc}"
    delay = next_retry_delay(event.attempts_this_round, exc) if retryable else None

    attempt.error = error
    attempt.traceback = traceback.format_exc()
    attempt.retryable = retryable
    event.last_error = error
    event.locked_until = None
    if delay is None:
        _finish_attempt(attempt, now, AttemptOutcome.FAILED)
        event.status = EventStatus.FAILED
        event.processed_at = now
        reason = "not retryable" if not retryable else "retries exhausted"
        logger.error(
            "event %s attempt %s failed (%s), dead-lettered: %s",
            event.id,
            attempt.number,
            reason,
            error,
        )
    else:
        _finish_attempt(attempt, now, AttemptOutcome.RETRY)
        event.status = EventStatus.PENDING
        event.next_retry_at = now + timedelta(seconds=delay)
        logger.warning(
            "event %s attempt %s failed, retry in %.0fs: %s", event.id, attempt.number, delay, error
        )
    db.session.commit()
    if event.status == EventStatus.PENDING:
        schedule_attempt(event)
    return event.status


def next_retry_delay(attempts_this_round: int, exc: Exception | None = None) -> float | None:
    """Seconds until the next attempt after `attempts_this_round` failures, None if none is left."""
    delays = current_app.config["RETRY_DELAYS"]
    if attempts_this_round > len(delays):
        return None
    delay = float(delays[attempts_this_round - 1])
    retry_after = getattr(exc, "retry_after", None)
    return max(delay, float(retry_after)) if retry_after else delay


def schedule_attempt(event: WebhookEvent) -> bool:
    """Hand a pending event's next attempt to Redis: now if it is due, else via rq-scheduler.

    Returns False when Redis is unreachable; the event then stays `pending`
    with its due time in the database, and is picked up from there.
    """
    attempt = event.attempts + 1
    try:
        if event.next_retry_at is None or event.next_retry_at <= utcnow():
            queueing.enqueue_event(event.id, attempt)
        else:
            queueing.schedule_event(event.id, attempt, event.next_retry_at)
    except RedisError as exc:
        logger.warning(
            "event %s: Redis unavailable, attempt %s not queued: %s", event.id, attempt, exc
        )
        return False
    return True


def _reschedule_early_job(event: WebhookEvent) -> None:
    """A job far ahead of its event's due time (e.g. a manual enqueue): put it back on schedule."""
    due = event.next_retry_at
    suffix = f"-at-{calendar.timegm(due.utctimetuple())}" if due else ""
    try:
        queueing.schedule_event(event.id, event.attempts + 1, event.next_retry_at, suffix=suffix)
        logger.info("event %s is not due until %s; rescheduled", event.id, event.next_retry_at)
    except RedisError as exc:
        logger.warning("event %s: could not reschedule early job: %s", event.id, exc)


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


def _finish_attempt(attempt: WebhookAttempt, now: datetime, outcome: str) -> None:
    attempt.finished_at = now
    attempt.duration_ms = int((now - attempt.started_at).total_seconds() * 1000)
    attempt.outcome = outcome


def _lease() -> timedelta:
    # Longer than any attempt can take: the RQ job timeout bounds it.
    return timedelta(seconds=current_app.config["RQ_JOB_TIMEOUT"] + 30)


def _worker_name() -> str:
    job = get_current_job()
    where = f"{socket.gethostname()}:{os.getpid()}"
    return f"{where} job {job.id}" if job else where


class ReplayRefused(ValueError):
    """The event cannot be replayed in its current state."""


def replay_event(event: WebhookEvent, *, force: bool = False) -> bool:
    """Put an event back to `pending`, due now, with a fresh retry budget, and queue it.

    A `success` event is refused unless `force`; an event being processed is
    always refused. Returns whether the attempt reached Redis (if not, it stays
    `pending` and is picked up from the database).
    """
    if event.status == EventStatus.PROCESSING:
        raise ReplayRefused(f"event {event.id} is being processed right now")
    if event.status == EventStatus.SUCCESS and not force:
        raise ReplayRefused(f"event {event.id} already succeeded (force to replay it anyway)")
    now = utcnow()
    event.status = EventStatus.PENDING
    event.attempts_at_replay = event.attempts
    event.next_retry_at = now
    event.processed_at = None
    event.updated_at = now
    db.session.commit()
    logger.info("event %s replayed", event.id)
    return schedule_attempt(event)
