"""Event handlers, one module per MercadoPago topic, and the registry that picks one.

An event whose type no handler takes is `ignored`, with the reason recorded. A handler
may say where its resource id lives when a notification has no `data.id`
(`resource_id_from(payload)`, see `notifications`). Adding a topic is a new module
here (a `Handler`), its entry in `HANDLERS`, and its migration and sandbox route.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row

from ..extensions import db
from ..models import EventStatus
from ..services import NotFoundError
from .authorized_payment import AuthorizedPaymentHandler
from .base import (
    IGNORED,
    TEST_NOTIFICATION,
    EventRef,
    Handler,
    HandlerContext,
    HandlerResult,
    is_test_notification,
)
from .chargeback import ChargebackHandler
from .merchant_order import MerchantOrderHandler
from .payment import PaymentHandler
from .risk import ClaimHandler, FraudAlertHandler
from .subscription import SubscriptionHandler

__all__ = [
    "HANDLERS",
    "TOPICS",
    "EventRef",
    "Handler",
    "HandlerContext",
    "HandlerResult",
    "PRIORITY_TOPICS",
    "TEST_NOTIFICATION",
    "handle_event",
    "handler_for",
    "lock_key",
    "log_fields",
]

logger = logging.getLogger(__name__)

HANDLERS: tuple[Handler, ...] = (
    PaymentHandler(),
    MerchantOrderHandler(),
    ChargebackHandler(),
    SubscriptionHandler(),
    AuthorizedPaymentHandler(),
    FraudAlertHandler(),
    ClaimHandler(),
)


def _by_topic(handlers: tuple[Handler, ...]) -> dict[str, Handler]:
    by_topic: dict[str, Handler] = {}
    for handler in handlers:
        for topic in handler.topics:
            if topic in by_topic:
                raise ValueError(f"topic {topic!r} has two handlers")
            by_topic[topic] = handler
    return by_topic


_BY_TOPIC = _by_topic(HANDLERS)
# The topics processed (the others are ignored).
TOPICS = frozenset(_BY_TOPIC)
# The topics queued ahead of bulk work (a handler's `priority = True`): fraud alerts, claims.
PRIORITY_TOPICS = frozenset(
    topic for topic, handler in _BY_TOPIC.items() if getattr(handler, "priority", False)
)


def handler_for(event_type: str) -> Handler | None:
    """The handler of this event type; None if events of this type are ignored."""
    return _BY_TOPIC.get(event_type)


def lock_key(event: EventRef) -> str | None:
    """The key that serialises the event's processing, if its handler has one."""
    handler = handler_for(event.type)
    return handler.lock_key(event) if handler else None


def log_fields(event: EventRef) -> dict[str, Any]:
    """The event's log fields its handler knows before any fetch (e.g. payment_id)."""
    handler = handler_for(event.type)
    return handler.log_fields(event) if handler else {}


def handle_event(event: Row[Any], context: HandlerContext) -> HandlerResult:
    """Process one event with its topic's handler; ignore it if none, or if it is
    MercadoPago's test notification about a resource nobody can read. Raises on failure."""
    handler = handler_for(event.type)
    if handler is None:
        reason = not_handled_reason(event.type)
        logger.info("event %s: %s; ignored", event.id, reason)
        return HandlerResult(IGNORED.status, reason=reason)
    try:
        return handler.handle(event, context)
    except NotFoundError:
        db.session.rollback()  # whatever the handler left unfinished
        if is_test_notification(event.id):
            logger.info("event %s: %s; ignored", event.id, TEST_NOTIFICATION)
            return HandlerResult(EventStatus.IGNORED, reason=TEST_NOTIFICATION)
        raise  # a live resource may not be readable yet: retried


def not_handled_reason(event_type: str) -> str:
    """Why an event of a type no handler takes is ignored (its `last_error`)."""
    return f"topic {event_type!r} is not handled by this service"
