"""The claim on an event: who runs its attempt, for how long (the lease), and the
conditional transitions out of `processing` that only the claim's holder can make."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from rq import get_current_job
from sqlalchemy import update

from .extensions import db
from .models import EventStatus, WebhookEvent
from .sql import execute_alone, one_statement_transactions
from .statements import CLAIM, CLAIM_AND_OPEN, HOLDS_CLAIM, OPEN_ATTEMPT
from .timeutil import utcnow

logger = logging.getLogger(__name__)

# rq-scheduler works in whole seconds and may fire up to a second early: a job
# arriving this close to its event's due time waits for it instead of being lost.
EARLY_ARRIVAL_GRACE = timedelta(seconds=5)

_events = WebhookEvent.__table__


class Claim(NamedTuple):
    """The attempt a successful claim opened: its `webhook_attempts` row."""

    attempt_id: int
    number: int
    started_at: datetime


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
        "lease_until": now + lease(),
        "now": now,
        "worker_name": _worker_name(),
    }
    if one_statement_transactions(db.session):
        opened = execute_alone(db.session, CLAIM_AND_OPEN, params)
        return None if opened is None else Claim(opened.id, opened.number, now)
    claimed = db.session.execute(CLAIM, params).one_or_none()
    if claimed is None:
        db.session.rollback()
        return None
    number = claimed.attempts
    attempt_id = db.session.execute(
        OPEN_ATTEMPT,
        {"event_id": event_id, "number": number, "now": now, "worker_name": params["worker_name"]},
    ).scalar_one()
    db.session.commit()
    return Claim(attempt_id, number, now)


def renew_lease(event_id: int) -> None:
    """Extend the claim of an event we are processing."""
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PROCESSING)
        .values(locked_until=utcnow() + lease())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def transition(event_id: int, attempt_number: int, *conditions: Any, **values: Any) -> bool:
    """Apply `values` to the event only if attempt `attempt_number` still holds its claim.

    One conditional UPDATE decides, so a worker finishing late and the reconciler
    taking back its expired lease can never both win.
    """
    result = db.session.execute(
        update(_events).where(HOLDS_CLAIM, *conditions).values(updated_at=utcnow(), **values),
        {"claimed_event_id": event_id, "claim_number": attempt_number},
    )
    if result.rowcount == 1:
        return True
    claim_lost(event_id, attempt_number)
    return False


def claim_lost(event_id: int, attempt_number: int) -> None:
    """Log that an attempt finished after its claim was taken back."""
    logger.warning("event %s attempt %s no longer holds its claim", event_id, attempt_number)


def lease() -> timedelta:
    """How long a claim lasts: renewed between steps; longer than any single step can take."""
    return timedelta(seconds=current_app.config["LEASE_SECONDS"])


def _worker_name() -> str:
    job = get_current_job()
    where = f"{socket.gethostname()}:{os.getpid()}"
    return f"{where} job {job.id}" if job else where
