"""The reconciler: make Redis agree with the database, which is the source of truth.

Run every RECONCILE_INTERVAL seconds by `scheduler.py` (in its own loop, not as
a job stored in Redis, so a Redis flush or outage cannot make it forget). It:
- takes back events stuck in `processing` past their lease (their worker died):
  the lost attempt is recorded and counts; the event is retried at once, or
  dead-lettered if it had no attempt left;
- re-enqueues `pending` events that are overdue and have no live job (stored
  while Redis was down, a flushed Redis, a scheduler that was down, a process
  that died between commit and enqueue).
Every change is a conditional UPDATE or an idempotent enqueue, so running it
twice at once, or beside a worker, does no harm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from redis import Redis, RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from . import queueing
from .extensions import db
from .holds import held_by_pause
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from .retries import fail_attempt, schedule_attempt
from .timeutil import utcnow

logger = logging.getLogger(__name__)

LIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


@dataclass
class ReconcileReport:
    """What one pass did."""

    leases_expired: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    redis_error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.leases_expired or self.requeued)


def reconcile(now: datetime | None = None, limit: int = 500) -> ReconcileReport:
    """One pass: expired leases first (they become due pending events), then missing jobs."""
    report = ReconcileReport()
    now = now or utcnow()
    report.leases_expired = recover_expired_leases(now, limit)
    try:
        report.requeued = requeue_missing_jobs(now, limit)
    except RedisError as exc:
        # Nothing can be queued now; the events wait in the database for the next pass.
        report.redis_error = str(exc)
        logger.warning("reconciler: Redis unavailable: %s", exc)
    if report:
        logger.info(
            "reconciler: %d expired lease(s) taken back, %d event(s) re-enqueued",
            len(report.leases_expired),
            len(report.requeued),
        )
    return report


def recover_expired_leases(now: datetime, limit: int = 500) -> list[int]:
    """Count the attempts of dead workers as failed and retry (or dead-letter) their events."""
    stuck = db.session.execute(
        select(WebhookEvent.id, WebhookEvent.attempts, WebhookEvent.locked_until)
        .where(
            WebhookEvent.status == EventStatus.PROCESSING,
            WebhookEvent.locked_until < now,
        )
        .order_by(WebhookEvent.locked_until)
        .limit(limit)
    ).all()
    recovered = []
    for event_id, attempt_number, locked_until in stuck:
        attempt = _attempt_row(event_id, attempt_number, now)
        status = fail_attempt(
            event_id,
            attempt,
            f"worker lost: the attempt's lease expired at {locked_until:%Y-%m-%d %H:%M:%S} UTC",
            retryable=True,
            immediate=True,
            outcome_if_retry=AttemptOutcome.LOST,
            conditions=(WebhookEvent.locked_until < now,),
        )
        if status != EventStatus.PROCESSING:
            recovered.append(event_id)
    return recovered


def requeue_missing_jobs(now: datetime, limit: int = 500) -> list[int]:
    """Enqueue overdue `pending` events that have no live job in Redis."""
    grace = timedelta(seconds=current_app.config["RECONCILE_GRACE"])
    overdue = db.session.scalars(
        select(WebhookEvent)
        .where(
            WebhookEvent.status == EventStatus.PENDING,
            WebhookEvent.next_retry_at <= now - grace,
        )
        .order_by(WebhookEvent.next_retry_at)
        .limit(limit)
    ).all()
    connection = queueing.get_redis()
    scheduler = queueing.get_scheduler()
    lease = timedelta(seconds=current_app.config["LEASE_SECONDS"])
    requeued = []
    for event in overdue:
        if held_by_pause(event.type):  # h6: paused events wait for the resume, which enqueues
            continue
        job_id = queueing.job_id(event.id, event.attempts + 1)
        status = _job_status(job_id, connection)
        # A job started long ago on an event still pending: its worker died before the claim.
        stale_start = status == JobStatus.STARTED and event.next_retry_at <= now - lease
        if status in LIVE_JOB_STATES and not stale_start:
            continue
        if status == JobStatus.SCHEDULED:
            scheduler.cancel(job_id)  # rq-scheduler missed its time; do not run it twice
        if not schedule_attempt(event):
            raise RedisError("enqueue failed")
        requeued.append(event.id)
    return requeued


def _job_status(job_id: str, connection: Redis) -> JobStatus | None:
    """The RQ status of a job, None when Redis has no such job (never queued, or flushed).

    Finished or failed jobs ran already and left the event pending (e.g. they
    arrived long before the event was due), so they do not count as live.
    """
    try:
        return Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return None


def _attempt_row(event_id: int, number: int, now: datetime) -> WebhookAttempt:
    """The attempt a dead worker left; created if it died between its claim and the insert."""
    attempt = db.session.scalars(
        select(WebhookAttempt).where(
            WebhookAttempt.event_id == event_id, WebhookAttempt.number == number
        )
    ).first()
    if attempt is None:
        attempt = WebhookAttempt(event_id=event_id, number=number, started_at=now)
        db.session.add(attempt)
    return attempt
