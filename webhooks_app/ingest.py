"""Storing a notification: the first and only thing done before answering MercadoPago."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import EventStatus, WebhookEvent
from .notifications import Notification
from .timeutil import utcnow

logger = logging.getLogger(__name__)


def store_event(notification: Notification) -> tuple[WebhookEvent, bool]:
    """Insert the event; return (event, created). A redelivery returns the stored event.

    The unique constraint on `webhook_id` decides, so two copies racing in
    parallel requests still create one row. The event is due at once: if it
    never reaches a queue it stays `pending` with that due time, and is found.
    """
    now = utcnow()
    event = WebhookEvent(
        webhook_id=notification.webhook_id,
        source=notification.source,
        type=notification.type,
        action=notification.action,
        resource_id=notification.resource_id,
        payload=notification.payload,
        raw_body=notification.raw_body,
        headers=notification.headers,
        query=notification.query,
        status=EventStatus.PENDING,
        attempts=0,
        attempts_at_replay=0,
        next_retry_at=now,
        received_at=now,
        updated_at=now,
    )
    db.session.add(event)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalars(
            select(WebhookEvent).where(WebhookEvent.webhook_id == notification.webhook_id)
        ).one_or_none()
        if existing is None:  # some other constraint failed: not a duplicate
            raise
        return existing, False
    return event, True
