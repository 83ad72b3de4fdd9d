"""Events a handler creates for the resources it names that we lack: one path for all.

A merchant order lists payments; an authorized payment names its payment and its
subscription. When we lack such a resource (or hold an older copy of it), an event about it
is created through the normal ingest path (`ingest.store_event`), so that it is processed,
locked, retried and shown like any notification. Its webhook id is deterministic (the
naming resource, the named one, and the state that asked for it): a redelivered
notification creates nothing twice (the unique `webhook_id`), as catch-up does.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..accounts import current_account_id
from ..extensions import db
from ..ingest import store_event
from ..models import EventStatus, Payment, WebhookEvent
from ..notifications import Notification

logger = logging.getLogger(__name__)

# `webhook_events.webhook_id` is a String(255).
MAX_WEBHOOK_ID = 255


def event_waiting(event_type: str, resource_id: str) -> bool:
    """Whether an event about this resource is pending or being processed: it will read the
    resource's latest state from MercadoPago anyway."""
    waiting = db.session.scalar(
        select(WebhookEvent.id).where(
            WebhookEvent.account_id == current_account_id(),
            WebhookEvent.type == event_type,
            WebhookEvent.resource_id == resource_id,
            WebhookEvent.status.in_([EventStatus.PENDING, EventStatus.PROCESSING]),
        )
    )
    return waiting is not None


def payment_is_current(
    payment_id: str,
    *,
    modified: datetime | None = None,
    status: str | None = None,
    status_detail: str | None = None,
) -> bool:
    """Whether our copy of the payment is as new as another resource says it is.

    With `modified` (a merchant order's summary has the payment's `last_modified`): ours was
    updated then or later. Without a date (an authorized payment gives only `{id, status,
    status_detail}`): ours is in that status. False when we lack it or nothing tells.
    """
    stored = db.session.execute(
        select(Payment.mp_date_last_updated, Payment.status, Payment.status_detail).where(
            Payment.account_id == current_account_id(), Payment.mp_payment_id == payment_id
        )
    ).first()
    if stored is None:
        return False
    if modified is not None:
        return stored.mp_date_last_updated is not None and stored.mp_date_last_updated >= modified
    if status is not None:
        return stored.status == status and status_detail in (None, stored.status_detail)
    return False


def queue_event(
    *,
    event_type: str,
    resource_id: str,
    webhook_id: str,
    source: str,
    action: str,
    payload: dict[str, Any],
) -> int | None:
    """Create an event about a resource we lack, unless one about it is waiting already.

    Returns the new event's id; None when one was waiting, or when this `webhook_id` was
    stored before (a redelivery of what asked for it). Its first attempt is queued as a
    notification's is (a Redis failure leaves it `pending` for the reconciler).
    """
    if event_waiting(event_type, resource_id):
        return None
    notification = Notification(
        source=source,
        webhook_id=webhook_id[:MAX_WEBHOOK_ID],
        type=event_type,
        action=action,
        resource_id=resource_id,
        payload=payload,
        raw_body="",
        headers={},
        query={},
        account_id=current_account_id(),  # the account of the event that asks for it
    )
    stored = store_event(notification)
    if not stored.created:
        return None
    logger.info("event %s created (%s %s, by %s)", stored.id, event_type, resource_id, source)
    return stored.id
