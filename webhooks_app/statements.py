"""The statements of a successful attempt, built once; values are bound at execution.

Building an ORM statement and flushing ORM objects cost more CPU than executing the
statement, so the hot path (`attempts`, `claims`) runs on these SQLAlchemy Core
statements. Bind names differ from column names: SQLAlchemy reserves those in VALUES/SET.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import and_, bindparam, insert, literal, or_, select, update

from .crm import SET_CONTACT
from .models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent

_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__

# What an attempt needs to know of its event (not the stored payload and headers).
LOAD_EVENT = select(
    _events.c.id,
    _events.c.account_id,
    _events.c.status,
    _events.c.type,
    _events.c.resource_id,
    _events.c.webhook_id,
    _events.c.next_retry_at,
    _events.c.received_at,
    _events.c.payment_id,
).where(_events.c.id == bindparam("event_id"))

# The claim: only a due `pending` event moves to `processing`; returns the attempt's number.
CLAIM = (
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

OPEN_ATTEMPT = (
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

# PostgreSQL: the claim and its attempt row in one statement (see `claims.claim_event`).
_claimed = CLAIM.cte("claimed")
CLAIM_AND_OPEN = (
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

FINISH_ATTEMPT = (
    update(_attempts)
    .where(_attempts.c.id == bindparam("attempt_id"))
    .values(
        finished_at=bindparam("now"),
        duration_ms=bindparam("duration"),
        outcome=bindparam("new_outcome"),
        error=bindparam("new_error"),
    )
)

# The event still belongs to attempt `number`: nobody (the reconciler) has taken it back.
# Every transition out of `processing` is conditional on it (see `claims.transition`).
# (Bind names that no column of `webhook_attempts` has: see `succeed_in_one`.)
HOLDS_CLAIM = and_(
    _events.c.id == bindparam("claimed_event_id"),
    _events.c.status == EventStatus.PROCESSING,
    _events.c.attempts == bindparam("claim_number"),
)

# The success transition; returns received_at if this attempt still held the claim.
SUCCEED = (
    update(_events)
    .where(HOLDS_CLAIM)
    .values(
        status=bindparam("new_status"),
        processed_at=bindparam("now"),
        locked_until=None,
        # None, or why the handler ignored the event (`HandlerResult.reason`).
        last_error=bindparam("new_last_error"),
        updated_at=bindparam("now"),
    )
    .returning(_events.c.received_at)
)


@functools.cache
def succeed_in_one(with_contact: bool) -> Any:
    """PostgreSQL: the success transaction's writes as one statement (see
    `attempts._record_success`)."""
    statement = SUCCEED.add_cte(FINISH_ATTEMPT.cte("finished_attempt"))
    if not with_contact:
        return statement
    # A column's onupdate is not applied inside a WITH: `updated_at` is set here.
    return statement.add_cte(SET_CONTACT.values(updated_at=bindparam("now")).cte("contact"))
