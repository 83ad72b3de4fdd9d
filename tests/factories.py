"""Rows written straight to the test database, for states a webhook cannot set up quickly
(received hours ago, a known latency, a million-row-like tie on received_at)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookEvent
from webhooks_app.timeutil import utcnow

_sequence = itertools.count(1)


def add_payment(mp_id: str | int, **fields: Any) -> Payment:
    """A stored payment (committed)."""
    now = utcnow()
    values: dict[str, Any] = {
        "mp_payment_id": str(mp_id),
        "status": "approved",
        "amount": Decimal("100.00"),
        "currency": "BRL",
        "payer_email": f"buyer{mp_id}@example.com",
        "created_at": now,
        "updated_at": now,
        "tags_applied": [],
    }
    values.update(fields)
    payment = Payment(**values)
    db.session.add(payment)
    db.session.commit()
    return payment


def add_event(
    *,
    status: str = EventStatus.PENDING,
    received_at: datetime | None = None,
    latency: float | None = None,
    **fields: Any,
) -> WebhookEvent:
    """A stored event (committed); `latency` sets processed_at that many seconds later."""
    number = next(_sequence)
    received_at = received_at or utcnow()
    values: dict[str, Any] = {
        "webhook_id": f"factory-{number}",
        "source": "webhook",
        "type": "payment",
        "action": "payment.updated",
        "resource_id": str(700000 + number),
        "payload": {"data": {"id": str(700000 + number)}},
        "headers": {},
        "query": {},
        "status": status,
        "attempts": 0,
        "attempts_at_replay": 0,
        "received_at": received_at,
        "updated_at": received_at,
        "processed_at": (received_at + timedelta(seconds=latency) if latency is not None else None),
    }
    values.update(fields)
    event = WebhookEvent(**values)
    db.session.add(event)
    db.session.commit()
    return event
