"""The `subscription_preapproval` topic: MercadoPago preapproval -> `subscriptions` row -> CRM.

The subscriber's contact carries one tag for the subscription's status,
`mp-subscription-<status>`, REPLACED when the status changes: the previous status tag
is removed and the new one added. The tags are recorded on the row only after the CRM
accepted them, so a retry after a failed CRM call removes the old tag again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError

from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, Subscription
from ..timeutil import parse_iso
from .authorized_payment import link_to_subscription
from .base import EventRef, HandlerContext, HandlerResult
from .values import decimal_or_none

logger = logging.getLogger(__name__)

TAG_PREFIX = "mp-subscription-"


def status_tag(status: str | None) -> str | None:
    """The contact's tag for a subscription status (`mp-subscription-authorized` …)."""
    return f"{TAG_PREFIX}{status}" if status else None


class SubscriptionHandler:
    """Fetch the preapproval, upsert its `subscriptions` row, replace the status tag."""

    topics = ("subscription_preapproval",)

    def lock_key(self, event: EventRef) -> str | None:
        return f"subscription:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {"subscription_id": event.resource_id}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        with observe_api_call("mercadopago"):
            data = mercadopago_client().get_preapproval(event.resource_id)
        context.renew_lease()
        subscription = store_subscription(data)
        # Its charges notified before it was stored (subscription_authorized_payment).
        link_to_subscription(subscription.mp_preapproval_id)
        context.renew_lease()
        sync_subscription_tags(subscription, context)
        return HandlerResult(EventStatus.SUCCESS)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def subscription_values(data: dict[str, Any]) -> dict[str, Any]:
    """The row's columns from MercadoPago's preapproval (`GET /preapproval/{id}`)."""
    recurring = data.get("auto_recurring") or {}
    return {
        "status": data.get("status"),
        "payer_email": data.get("payer_email") or None,
        "preapproval_plan_id": data.get("preapproval_plan_id"),
        "reason": data.get("reason"),
        "external_reference": data.get("external_reference"),
        "amount": decimal_or_none(recurring.get("transaction_amount")),
        "currency": recurring.get("currency_id"),
        "frequency": _int(recurring.get("frequency")),
        "frequency_type": recurring.get("frequency_type"),
        "next_payment_date": parse_iso(data.get("next_payment_date")),
        "mp_last_modified": parse_iso(data.get("last_modified")),
        "raw": data,
    }


def _find(mp_preapproval_id: str) -> Subscription | None:
    return db.session.scalars(
        select(Subscription).where(Subscription.mp_preapproval_id == mp_preapproval_id)
    ).one_or_none()


def store_subscription(data: dict[str, Any]) -> Subscription:
    """Insert or update the subscription; an older read never overwrites a newer one.

    The unique `mp_preapproval_id` decides who creates the row when two workers race
    (the loser reads the winner's row and updates it). Commits.
    """
    mp_id = str(data["id"])
    values = subscription_values(data)
    subscription = _find(mp_id)
    if subscription is None:
        subscription = Subscription(mp_preapproval_id=mp_id, **values)
        db.session.add(subscription)
        try:
            db.session.commit()
            return subscription
        except IntegrityError:
            db.session.rollback()
            subscription = _find(mp_id)
            assert subscription is not None  # the row that won the race
    stored, ours = subscription.mp_last_modified, values["mp_last_modified"]
    if stored is None or ours is None or stored <= ours:
        for name, value in values.items():
            setattr(subscription, name, value)
    else:
        logger.info("subscription %s: stale read (%s < %s) not stored", mp_id, ours, stored)
    db.session.commit()
    return subscription


def sync_subscription_tags(subscription: Subscription, context: HandlerContext) -> None:
    """Give the subscriber's contact the tag of the current status, removing the previous
    status tags; record the contact and tags on the row (after the CRM accepted them)."""
    if not subscription.payer_email:
        logger.info("subscription %s has no payer e-mail; CRM skipped", subscription.id)
        return
    tag = status_tag(subscription.status)
    applied = list(subscription.tags_applied or [])
    stale = [t for t in applied if t.startswith(TAG_PREFIX) and t != tag]
    contact_id = context.crm.tag(
        subscription.payer_email,
        add=[tag] if tag else [],
        remove=stale,
        renew_lease=context.renew_lease,
    )
    tags = [t for t in applied if t not in stale]
    if tag and tag not in tags:
        tags.append(tag)
    if (contact_id, tags) != (subscription.ghl_contact_id, subscription.tags_applied or []):
        subscription.ghl_contact_id = contact_id
        subscription.tags_applied = tags
        db.session.commit()
