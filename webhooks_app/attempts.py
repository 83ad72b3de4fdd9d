"""Running attempts: claim an event, run its handler, record the outcome.

`process_event` is the RQ job (queued under its old name, `processing.process_event`).
It takes an event id, never an ORM object, and is safe to run more than once for the
same event: only the caller whose conditional UPDATE moves the row from `pending` to
`processing` does any work.

A successful attempt runs on a few SQLAlchemy Core statements built once
(`statements`); the rarer paths (failures, hand-backs, the reconciler) use the ORM.
Such an attempt has three transactions: the claim with its attempt row, the handler's
store (the payment with the event's link to it), and the outcome. On PostgreSQL each is
a single statement (`WITH … UPDATE/INSERT …`) run in autocommit, one round trip where a
transaction costs three or more (psycopg's BEGIN, the statements, the COMMIT); SQLite,
whose `WITH` takes only a SELECT, runs the same writes as a transaction of several
statements.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import Row

from . import accounts, tracing
from .busy import ResourceBusy
from .claims import EARLY_ARRIVAL_GRACE, Claim, claim_event, claim_lost, renew_lease
from .config import ConfigError
from .crm import SET_CONTACT
from .extensions import PINNED_CONNECTION, db
from .handlers import HandlerContext, HandlerResult, handle_event, lock_key, log_fields
from .holds import processing_gate
from .locks import ResourceLock, resource_lock
from .logging_setup import bind_event_fields, event_context
from .metrics import ATTEMPTS, count_final
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from .retries import fail_attempt, postpone
from .secret_box import SecretUnreadable
from .sql import execute_alone, one_statement_transactions
from .statements import FINISH_ATTEMPT, LOAD_EVENT, SUCCEED, succeed_in_one
from .timeutil import milliseconds_between, utcnow

logger = logging.getLogger(__name__)

# Another event holds the lock of this one's resource (after `locks.LOCK_WAIT`): retry
# the attempt this much later.
BUSY_DELAY = 2.0


def process_event(event_id: int) -> str:
    """RQ job: run one attempt for an event if it is due. Returns the event's status after."""
    try:
        with tracing.attempt_span(event_id), event_context(event_id=event_id), job_session():
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
    """Claim the event, run its handler once and record the result, with its account's
    settings and clients (`accounts.using_account`)."""
    event = execute_alone(db.session, LOAD_EVENT, {"event_id": event_id})
    if event is None:
        logger.warning("event %s does not exist; job dropped", event_id)
        return "missing"
    try:
        account = accounts.by_id(event.account_id)
    except (ConfigError, SecretUnreadable):
        # Its secrets cannot be read (ACCOUNT_SECRET_KEYS): nothing can be done for it; it
        # stays pending, unclaimed and uncounted, and the reconciler queues it again.
        logger.exception("event %s: its account is unreadable; left pending", event_id)
        return event.status
    if account is None:  # deleted with its events meanwhile
        logger.warning("event %s: account %s is gone; job dropped", event_id, event.account_id)
        return "missing"
    with accounts.using_account(account):
        return _run_for_account(event)


def _run_for_account(event: Row[Any]) -> str:
    event_id = event.id
    if event.status != EventStatus.PENDING:
        logger.info("event %s is %s; nothing to do", event_id, event.status)
        return event.status
    bind_event_fields(webhook_id=event.webhook_id, account=event.account_id, **log_fields(event))
    now = utcnow()
    if event.next_retry_at is not None and event.next_retry_at > now:
        early = event.next_retry_at - now
        if early > EARLY_ARRIVAL_GRACE:
            # Not due for a while (e.g. a manual enqueue): the reconciler queues it when due.
            logger.info("event %s is not due until %s; job dropped", event_id, event.next_retry_at)
            return event.status
        time.sleep(early.total_seconds())

    # A paused stage or an open breaker leaves the event pending: unclaimed, uncounted.
    if (held := processing_gate(event)) is not None:
        return held
    with resource_lock(event) as lock:
        if lock is None:
            return postpone(event_id, BUSY_DELAY, busy=lock_key(event))
        claim = claim_event(event_id)
        if claim is None:
            logger.info("event %s was claimed by someone else", event_id)
            return db.session.get(WebhookEvent, event_id, populate_existing=True).status
        return _run_claimed(event, claim, _lease_renewer(event_id, lock))


def _lease_renewer(event_id: int, lock: ResourceLock) -> Callable[[], None]:
    """Renew the claim (and the resource lock) between steps, but only once a quarter of
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
        result = handle_event(event, HandlerContext(renew_lease=renew))
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


def _record_success(event_id: int, attempt: Claim, result: HandlerResult) -> str:
    """Finish the attempt and the event in one transaction, with the payment's new
    CRM fields if the handler changed them. On PostgreSQL the three writes are
    one statement (`WITH … UPDATE`), run in autocommit."""
    now = utcnow()
    status, contact, reason = result
    outcome = AttemptOutcome.SUCCESS if status == EventStatus.SUCCESS else AttemptOutcome.IGNORED
    # Separate dicts: a key named like a column of an UPDATE's table would join its SET.
    finish = {
        "attempt_id": attempt.attempt_id,
        "now": now,
        "duration": milliseconds_between(attempt.started_at, now),
        "new_outcome": outcome,
        "new_error": reason,
    }
    succeed = {
        "claimed_event_id": event_id,
        "claim_number": attempt.number,
        "new_status": status,
        "new_last_error": reason,
        "now": now,
    }
    contact_params = contact.params() if contact else {}
    if one_statement_transactions(db.session):
        won = execute_alone(
            db.session,
            succeed_in_one(contact is not None),
            {**finish, **succeed, **contact_params},
        )
    else:
        if contact:
            db.session.execute(SET_CONTACT, contact_params)
        db.session.execute(FINISH_ATTEMPT, finish)
        won = db.session.execute(SUCCEED, succeed).one_or_none()
        db.session.commit()
    ATTEMPTS.labels(outcome).inc()
    if won is None:
        claim_lost(event_id, attempt.number)
        return db.session.get(WebhookEvent, event_id, populate_existing=True).status
    count_final(status, won.received_at, now)
    logger.info("event %s attempt %s: %s", event_id, attempt.number, status)
    return status


def _record_failure(event_id: int, attempt_id: int, exc: Exception) -> str:
    attempt = db.session.get(WebhookAttempt, attempt_id)
    busy = isinstance(exc, ResourceBusy)
    # A busy lock is no failure: its traceback would only bury the real ones.
    attempt.traceback = None if busy else traceback.format_exc()
    return fail_attempt(
        event_id,
        attempt,
        f"{type(exc).__name__}: {exc}",
        retryable=bool(getattr(exc, "retryable", True)),
        retry_after=getattr(exc, "retry_after", None),
        counted=not busy,
    )


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
