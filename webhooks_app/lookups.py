"""Fetching one event or payment by the id a URL or a command line gave."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .extensions import db
from .filters import CONTROL_CHARS, of_account
from .jobs import event_jobs
from .models import Payment, WebhookEvent
from .pagination import MAX_ID

# The events shown with a payment: the newest ones (a payment rarely has more).
PAYMENT_EVENTS_SHOWN = 100


def find_event(event_id: int, account_id: int | None = None) -> WebhookEvent | None:
    """The event with this id, if it is `account_id`'s (None: any account's); None also for
    ids no row can have (the database would refuse)."""
    if not 0 < event_id <= MAX_ID:
        return None
    event = db.session.get(WebhookEvent, event_id)
    if event is None or account_id not in (None, event.account_id):
        return None  # another account's event is not there for this caller
    return event


def find_payment(mp_id: str, account_id: int | None = None) -> Payment | None:
    """The payment with this MercadoPago id, of `account_id` (None: of any account, the
    oldest stored first); None also for ids no payment can have."""
    if not mp_id or len(mp_id) > 64 or CONTROL_CHARS.search(mp_id):
        return None
    query = select(Payment).where(Payment.mp_payment_id == mp_id).order_by(Payment.id)
    return db.session.scalars(of_account(query, Payment, account_id)).first()


def payment_events(payment: Payment, limit: int = PAYMENT_EVENTS_SHOWN) -> list[WebhookEvent]:
    """The events that touched a payment, newest first."""
    return list(
        db.session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.payment_id == payment.id)
            .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
            .limit(limit)
        )
    )


def event_detail(event: WebhookEvent) -> dict[str, Any]:
    """An event as the API and `flask webhooks show --json` give it: all stored, jobs in Redis."""
    data = event.to_dict(with_attempts=True)
    for attempt, row in zip(data["attempt_log"], event.attempt_log, strict=True):
        attempt["traceback"] = row.traceback
    data["payload"] = event.payload
    data["headers"] = event.headers
    data["query"] = event.query
    data["rq"] = event_jobs(event)
    return data
