"""The interface of a topic's handler, and what it gives back to the attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Row, bindparam, select

from ..crm import CRM, ContactChange, current_crm, no_op
from ..extensions import db
from ..models import EventStatus, WebhookEvent


class EventRef(Protocol):
    """What a handler is told of an event before fetching anything: a stored event's row
    (`statements.LOAD_EVENT`: id, type, resource_id, payment_id …) or a `Notification`."""

    type: str
    resource_id: str


class HandlerResult(NamedTuple):
    """What an attempt that raised nothing leaves to record, with its outcome."""

    status: str  # EventStatus.SUCCESS or IGNORED
    # The CRM fields to write with the outcome (in the same transaction), if they changed.
    contact: ContactChange | None = None
    # Why (e.g. why it was ignored): recorded as the event's `last_error` and the
    # attempt's `error`; None records none.
    reason: str | None = None


IGNORED = HandlerResult(EventStatus.IGNORED)


@dataclass(frozen=True)
class HandlerContext:
    """What an attempt gives its handler besides the event."""

    # Call between steps (and while waiting for a rate-limit slot): keeps the claim and
    # the lock of a long attempt; cheap when there is nothing to renew yet.
    renew_lease: Callable[[], None] = no_op
    crm: CRM = field(default_factory=current_crm)


class Handler(Protocol):
    """Processes the events of its topics: fetch the resource, store it, link the event to
    it (in the store's own transaction), and return the CRM changes to record.

    Every step must be idempotent: a failed attempt runs again from the start.
    """

    # The MercadoPago notification types (topics) it handles.
    topics: tuple[str, ...]

    def lock_key(self, event: EventRef) -> str | None:
        """What serialises its events (e.g. `payment:<id>`): two events with one key never
        run at once. None: no lock."""
        ...

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        """Fields for the event's log lines (`logging_setup.EVENT_FIELDS`), e.g. payment_id."""
        ...

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        """Process the event once; raise on failure (a typed error says if it is retryable)."""
        ...


# MercadoPago's "Simular" button (Your integrations → Webhooks) notifies with `live_mode:
# false` about a `data.id` its API cannot read (404), whatever the topic chosen: nothing will
# ever be there, so such an event is ignored at once instead of retried into a dead letter.
TEST_NOTIFICATION = "MercadoPago test notification"
_events = WebhookEvent.__table__
_PAYLOAD = select(_events.c.payload).where(_events.c.id == bindparam("event_id"))


def is_test_notification(event_id: int) -> bool:
    """Whether the event's notification says `live_mode: false` (absent: live; the IPN form
    carries no body)."""
    payload = db.session.execute(_PAYLOAD, {"event_id": event_id}).scalar()
    db.session.commit()  # no transaction stays open (the outcome may run in autocommit)
    return isinstance(payload, dict) and payload.get("live_mode") is False
