"""Running attempts: claim an event, run its pipeline, record the outcome, schedule a retry.

`process_event` is the RQ job. It takes an event id, never an ORM object, and
is safe to run more than once for the same event: only the caller whose
conditional UPDATE moves the row from `pending` to `processing` does any work.

A successful attempt runs on a few SQLAlchemy Core statements built once (below):
building an ORM statement and flushing ORM objects cost more CPU than executing the
statement. The rarer paths (failures, hand-backs, the reconciler) use the ORM.

Such an attempt has three transactions: the claim with its attempt row, the payment
with the event's link to it, and the outcome. On PostgreSQL each is a single statement
(`WITH … UPDATE/INSERT …`) run in autocommit, one round trip where a transaction costs
three or more (psycopg's BEGIN, the statements, the COMMIT); SQLite, whose `WITH` takes
only a SELECT, runs the same writes as a transaction of several statements.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from redis import RedisError
from redis.exceptions import LockError
from redis.lock import Lock
from rq import get_current_job
from sqlalchemy import Row, and_, bindparam, insert, literal, or_, select, update

from . import queueing
from .extensions import PINNED_CONNECTION, db
from .holds import processing_gate
from .logging_setup import bind_event_fields, event_context
from .metrics import ATTEMPTS, EVENTS_FINISHED, PROCESSING_LATENCY
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from .pipeline import SET_CONTACT, PipelineResult, run_pipeline
from .sql import execute_alone, one_statement_transactions
from .timeutil import utcnow

logger = logging.getLogger(__name__)

# rq-scheduler works in whole seconds and may fire up to a second early: a job
# arriving this close to its event's due time waits for it instead of being lost.
EARLY_ARRIVAL_GRACE = timedelta(seconds=5)
# Another event about the same payment is running: wait this long for it, then postpone.
PAYMENT_LOCK_WAIT = 5.0
PAYMENT_BUSY_DELAY = 2.0

# -- the statements of a successful attempt, built once; values bound at execution --
# (bind names differ from column names: SQLAlchemy reserves those in VALUES/SET)
_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__

# What an attempt needs to know of its event (not the stored payload and headers).
_LOAD_EVENT = select(
    _events.c.id,
    _events.c.status,
    _events.c.type,
    _events.c.resource_id,
    _events.c.webhook_id,
    _events.c.next_retry_at,
    _events.c.received_at,
    _events.c.payment_id,
).where(_events.c.id == bindparam("event_id"))

# The claim: only a due `pending` event moves to `processing`; returns the attempt's number.
_CLAIM = (
    update(_events)
    .where(
        _events.c.id == bindparam("event_id"),
        _events.c.status == EventStatus.PENDING,
        or_(_events.c.next_retry_at.is_(None), _events.c.next_retry_at <= bindparam("due_by")),
    )
    .values(
        status=EventStatus.PROCESSING,
        attempts=_events.c.attempts + 1,
        next_retry_at=None,
        locked_until=bindparam("lease_until"),
        updated_at=bindparam("now"),
    )
    .returning(_events.c.id, _events.c.attempts)
)

_OPEN_ATTEMPT = (
    insert(_attempts)
    .values(
        event_id=bindparam("event_id"),
        number=bindparam("number"),
        started_at=bindparam("now"),
        worker=bindparam("worker_name"),
        outcome=AttemptOutcome.RUNNING,
    )
    .returning(_attempts.c.id)
)

# PostgreSQL: the claim and its attempt row in one statement (see `claim_event`).
_claimed = _CLAIM.cte("claimed")
_CLAIM_AND_OPEN = (
    insert(_attempts)
    .from_select(
        ["event_id", "number", "started_at", "worker", "outcome"],
        select(
            _claimed.c.id,
            _claimed.c.attempts,
            bindparam("now", type_=_attempts.c.started_at.type),
            bindparam("worker_name", type_=_attempts.c.worker.type),
            literal(AttemptOutcome.RUNNING, type_=_attempts.c.outcome.type),
        ),
    )
    .returning(_attempts.c.id, _attempts.c.number)
)

_FINISH_ATTEMPT = (
    update(_attempts)
    .where(_attempts.c.id == bindparam("attempt_id"))
    .values(
        finished_at=bindparam("now"),
        duration_ms=bindparam("duration"),
        outcome=bindparam("new_outcome"),
    )
)

# The event still belongs to attempt `number`: nobody (the reconciler) has taken it back.
# Every transition out of `processing` is conditional on it (see `_transition`).
# (Bind names that no column of `webhook_attempts` has: see `_succeed_in_one`.)
_HOLDS_CLAIM = and_(
    _events.c.id == bindparam("claimed_event_id"),
    _events.c.status == EventStatus.PROCESSING,
    _events.c.attempts == bindparam("claim_number"),
)

# The success transition, built once; returns received_at if this attempt still held the claim.
_SUCCEED = (
    update(_events)
    .where(_HOLDS_CLAIM)
    .values(
        status=bindparam("new_status"),
        processed_at=bindparam("now"),
        locked_until=None,
        last_error=None,
        updated_at=bindparam("now"),
    )
    .returning(_events.c.received_at)
)


@functools.cache
def _succeed_in_one(with_contact: bool) -> Any:
    """PostgreSQL: the success transaction's writes as one statement (see `_record_success`)."""
    statement = _SUCCEED.add_cte(_FINISH_ATTEMPT.cte("finished_attempt"))
    if not with_contact:
        return statement
    # A column's onupdate is not applied inside a WITH: `updated_at` is set here.
    return statement.add_cte(SET_CONTACT.values(updated_at=bindparam("now")).cte("contact"))


class Claim(NamedTuple):
    """The attempt a successful claim opened: its `webhook_attempts` row."""

    attempt_id: int
    number: int
    started_at: datetime


def process_event(event_id: int) -> str:
    """RQ job: run one attempt for an event if it is due. Returns the event's status after."""
    try:
        with event_context(event_id=event_id), job_session():
            return run_attempt(event_id)
    finally:
        # Worker processes reuse one app context: never carry a session across jobs.
        db.session.remove()


@contextmanager
def job_session() -> Iterator[None]:
    """Give the block a fresh session on one connection, whose objects survive commits.

    One checkout (and so one pre-ping) for the job's few transactions instead of one
    each; and no re-SELECT of the event, attempt and payment after every commit: the
    job knows what it wrote, and what others may change (the event's status and
    counters) is read again explicitly, with `populate_existing`.
    """
    db.session.remove()
    with db.engine.connect() as connection:
        session = db.session()
        session.info[PINNED_CONNECTION] = connection
        session.expire_on_commit = False
        try:
            yield
        finally:
            db.session.remove()  # before the connection goes back to the pool


def run_attempt(event_id: int) -> str:
    """Claim the event, run its pipeline once and record the result."""
    event = execute_alone(db.session, _LOAD_EVENT, {"event_id": event_id})
    if event is None:
        logger.warning("event %s does not exist; job dropped", event_id)
        return "missing"
    if event.status != EventStatus.PENDING:
        logger.info("event %s is %s; nothing to do", event_id, event.status)
        return event.status
    bind_event_fields(
        webhook_id=event.webhook_id,
        payment_id=event.resource_id if event.type == "payment" else None,
    )
    now = utcnow()
    if event.next_retry_at is not None and event.next_retry_at > now:
        early = event.next_retry_at - now
        if early > EARLY_ARRIVAL_GRACE:
            # Not due for a while (e.g. a manual enqueue): the reconciler queues it when due.
            logger.info("event %s is not due until %s; job dropped", event_id, event.next_retry_at)
            return event.status
        time.sleep(early.total_seconds())

    # h6 (pause/breaker): a paused stage or open breaker leaves it pending, unclaimed, uncounted.
    if (held := processing_gate(event)) is not None:
        return held
    with payment_lock(event) as lock:
        if lock is None:
            return _postpone(event_id, PAYMENT_BUSY_DELAY)
        claim = claim_event(event_id)
        if claim is None:
            logger.info("event %s was claimed by someone else", event_id)
            return db.session.get(WebhookEvent, event_id, populate_existing=True).status
        return _run_claimed(event, claim, _lease_renewer(event_id, lock))


def _lease_renewer(event_id: int, lock: PaymentLock) -> Callable[[], None]:
    """Renew the claim (and the payment lock) between steps, but only once a quarter of
    the lease has gone by: a normal attempt takes milliseconds and writes nothing extra."""
    lease = current_app.config["LEASE_SECONDS"]
    renewed_at = time.monotonic()

    def renew() -> None:
        nonlocal renewed_at
        if time.monotonic() - renewed_at < lease / 4:
            return
        renew_lease(event_id)
        lock.extend()
        renewed_at = time.monotonic()

    return renew


def _run_claimed(event: Row[Any], claim: Claim, renew: Callable[[], None]) -> str:
    event_id = event.id
    bind_event_fields(attempt=claim.number)
    logger.info("event %s attempt %s started", event_id, claim.number)

    try:
        result = run_pipeline(event, renew_lease=renew)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded; none escapes unrecorded
        db.session.rollback()
        return _record_failure(event_id, claim.attempt_id, exc)
    except BaseException:
        # SystemExit from a worker's cold shutdown (second SIGTERM), KeyboardInterrupt:
        # hand the event back so that it never stays `processing`, then let the exit go on.
        db.session.rollback()
        _hand_back(event_id, claim.attempt_id)
        raise
    return _record_success(event_id, claim, result)


def claim_event(event_id: int) -> Claim | None:
    """Atomically move a due `pending` event to `processing` and open its attempt row.

    One conditional UPDATE decides who wins; the winner gets the new attempt
    (committed with the claim, in one transaction), everyone else None. On PostgreSQL
    both are one statement (`WITH claimed AS (UPDATE …) INSERT …`), run in autocommit.
    """
    now = utcnow()
    params = {
        "event_id": event_id,
        "due_by": now + EARLY_ARRIVAL_GRACE,
        "lease_until": now + _lease(),
        "now": now,
        "worker_name": _worker_name(),
    }
    if one_statement_transactions(db.session):
        opened = execute_alone(db.session, _CLAIM_AND_OPEN, params)
        return None if opened is None else Claim(opened.id, opened.number, now)
    claimed = db.session.execute(_CLAIM, params).one_or_none()
    if claimed is None:
        db.session.rollback()
        return None
    number = claimed.attempts
    attempt_id = db.session.execute(
        _OPEN_ATTEMPT,
        {"event_id": event_id, "number": number, "now": now, "worker_name": params["worker_name"]},
    ).scalar_one()
    db.session.commit()
    return Claim(attempt_id, number, now)


def renew_lease(event_id: int) -> None:
    """Extend the claim of an event we are processing."""
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PROCESSING)
        .values(locked_until=utcnow() + _lease())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _transition(event_id: int, attempt_number: int, *conditions: Any, **values: Any) -> bool:
    """Apply `values` to the event only if attempt `attempt_number` still holds its claim.

    One conditional UPDATE decides, so a worker finishing late and the reconciler
    taking back its expired lease can never both win.
    """
    result = db.session.execute(
        update(_events).where(_HOLDS_CLAIM, *conditions).values(updated_at=utcnow(), **values),
        {"claimed_event_id": event_id, "claim_number": attempt_number},
    )
    if result.rowcount == 1:
        return True
    _claim_lost(event_id, attempt_number)
    return False


def _claim_lost(event_id: int, attempt_number: int) -> None:
    logger.warning("event %s attempt %s no longer holds its claim", event_id, attempt_number)


def _record_success(event_id: int, attempt: Claim, result: PipelineResult) -> str:
    """Finish the attempt and the event in one transaction, with the payment's new
    GoHighLevel fields if the pipeline changed them. On PostgreSQL the three writes are
    one statement (`WITH … UPDATE`), run in autocommit."""
    now = utcnow()
    status, contact = result
    outcome = AttemptOutcome.SUCCESS if status == EventStatus.SUCCESS else AttemptOutcome.IGNORED
    # Separate dicts: a key named like a column of an UPDATE's table would join its SET.
    finish = {
        "attempt_id": attempt.attempt_id,
        "now": now,
        "duration": _duration_ms(attempt.started_at, now),
        "new_outcome": outcome,
    }
    succeed = {
        "claimed_event_id": event_id,
        "claim_number": attempt.number,
        "new_status": status,
        "now": now,
    }
    contact_params = contact.params() if contact else {}
    if one_statement_transactions(db.session):
        won = execute_alone(
            db.session,
            _succeed_in_one(contact is not None),
            {**finish, **succeed, **contact_params},
        )
    else:
        if contact:
            db.session.execute(SET_CONTACT, contact_params)
        db.session.execute(_FINISH_ATTEMPT, finish)
        won = db.session.execute(_SUCCEED, succeed).one_or_none()
        db.session.commit()
    ATTEMPTS.labels(outcome).inc()
    if won is None:
        _claim_lost(event_id, attempt.number)
        return db.session.get(WebhookEvent, event_id, populate_existing=True).status
    count_final(status, won.received_at, now)
    logger.info("event %s attempt %s: %s", event_id, attempt.number, status)
    return status


def _record_failure(event_id: int, attempt_id: int, exc: Exception) -> str:
    attempt = db.session.get(WebhookAttempt, attempt_id)
    attempt.traceback = traceback.format_exc()
    return fail_attempt(
        event_id,
        attempt,
        f"{type(exc).__name__}: {exc}",
        retryable=bool(getattr(exc, "retryable", True)),
        retry_after=getattr(exc, "retry_after", None),
    )


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
) -> str:
    """Record a failed attempt and apply the retry policy: schedule the next or dead-letter.

    `immediate` retries at once (the attempt was lost, not refused: nothing to
    wait for); `conditions` further restrict the claim check (the reconciler
    requires the lease to be expired still).
    """
    now = utcnow()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    attempt.error = error
    attempt.retryable = retryable
    delay = next_retry_delay(event.attempts_this_round, retry_after) if retryable else None
    if delay is None:
        outcome, values = AttemptOutcome.FAILED, {"status": EventStatus.FAILED, "processed_at": now}
    else:
        delay = 0.0 if immediate else delay
        next_at = now + timedelta(seconds=delay)
        outcome, values = (
            outcome_if_retry,
            {"status": EventStatus.PENDING, "next_retry_at": next_at},
        )
    owned = _transition(
        event_id, attempt.number, *conditions, last_error=error, locked_until=None, **values
    )
    _finish_attempt(attempt, now, outcome if owned else AttemptOutcome.FAILED)
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
        logger.warning(
            "event %s attempt %s failed, retry in %.0fs: %s", event_id, attempt.number, delay, error
        )
        schedule_attempt(event)
    return event.status


def _hand_back(event_id: int, attempt_id: int) -> None:
    """The worker is being stopped mid-attempt: put the event back to `pending`, due now."""
    try:
        attempt = db.session.get(WebhookAttempt, attempt_id)
        fail_attempt(
            event_id,
            attempt,
            "worker stopped during the attempt; handed back",
            retryable=True,
            immediate=True,
            outcome_if_retry=AttemptOutcome.INTERRUPTED,
        )
    except Exception:  # noqa: BLE001 - shutting down: the lease expiry is the fallback
        logger.exception("event %s could not be handed back; its lease will expire", event_id)


def _postpone(event_id: int, seconds: float) -> str:
    """Leave an unclaimed event `pending` a little longer (another event holds its payment)."""
    due = utcnow() + timedelta(seconds=seconds)
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PENDING)
        .values(next_retry_at=due)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    logger.info(
        "event %s: payment %s is busy; postponed %.0fs", event_id, event.resource_id, seconds
    )
    if event.status == EventStatus.PENDING:
        schedule_attempt(event, suffix=f"-postponed-{time.time_ns()}")
    return event.status


class PaymentLock:
    """The per-payment Redis lock of one attempt; `extend` keeps it as long as the lease."""

    def __init__(self, lock: Lock | None, seconds: float) -> None:
        self.lock = lock
        self.seconds = seconds

    def extend(self) -> None:
        if self.lock is None:
            return
        try:
            self.lock.extend(self.seconds, replace_ttl=True)
        except (RedisError, LockError) as exc:
            logger.warning("payment lock could not be extended: %s", exc)


@contextmanager
def payment_lock(event: Row[Any]) -> Iterator[PaymentLock | None]:
    """Hold the per-payment lock while processing, so events about one payment never overlap.

    Yields None when another worker holds it. If Redis is unreachable, processing
    goes on unlocked: the monotonic payment upsert still keeps the newest state.
    """
    seconds = current_app.config["LEASE_SECONDS"]
    if event.type != "payment":
        yield PaymentLock(None, seconds)
        return
    lock = queueing.get_redis().lock(
        f"lock:payment:{event.resource_id}", timeout=seconds, blocking_timeout=PAYMENT_LOCK_WAIT
    )
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        logger.warning("event %s: payment lock unavailable (%s); going on unlocked", event.id, exc)
        yield PaymentLock(None, seconds)
        return
    if not acquired:
        yield None
        return
    try:
        yield PaymentLock(lock, seconds)
    finally:
        try:
            lock.release()
        except (RedisError, LockError) as exc:
            logger.warning("event %s: payment lock release failed: %s", event.id, exc)


def next_retry_delay(attempts_this_round: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next attempt after `attempts_this_round` failures; None if none is left."""
    delays = current_app.config["RETRY_DELAYS"]
    if attempts_this_round > len(delays):
        return None
    delay = float(delays[attempts_this_round - 1])
    return max(delay, float(retry_after)) if retry_after else delay


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
            queueing.enqueue_event(event.id, attempt, suffix)
        else:
            queueing.schedule_event(event.id, attempt, event.next_retry_at, suffix)
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


def _finish_attempt(attempt: WebhookAttempt, now: datetime, outcome: str) -> None:
    attempt.finished_at = now
    attempt.duration_ms = _duration_ms(attempt.started_at, now)
    attempt.outcome = outcome
    ATTEMPTS.labels(outcome).inc()


def _duration_ms(started_at: datetime, finished_at: datetime) -> int:
    return int((finished_at - started_at).total_seconds() * 1000)


def count_final(status: str, received_at: datetime | None, processed_at: datetime | None) -> None:
    """Metrics for an event that just reached its final status."""
    EVENTS_FINISHED.labels(status).inc()
    if processed_at and received_at:
        PROCESSING_LATENCY.observe((processed_at - received_at).total_seconds())


def _lease() -> timedelta:
    # Renewed between pipeline steps; longer than any single step can take.
    return timedelta(seconds=current_app.config["LEASE_SECONDS"])


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
