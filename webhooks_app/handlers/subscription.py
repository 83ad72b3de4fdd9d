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

from ..accounts import current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, Subscription
from ..sql import dialect_insert, never_back_in_time
from ..timeutil import parse_iso, utcnow
from .authorized_payment import link_to_subscription
from .base import EventRef, HandlerContext, HandlerResult
from .values import decimal_or_none, int_or_none

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
        "frequency": int_or_none(recurring.get("frequency")),
        "frequency_type": recurring.get("frequency_type"),
        "next_payment_date": parse_iso(data.get("next_payment_date")),
        "mp_last_modified": parse_iso(data.get("last_modified")),
        "raw": data,
    }


_subscriptions = Subscription.__table__
# The columns an upsert writes (on insert also mp_preapproval_id and created_at).
SUBSCRIPTION_FIELDS = (*subscription_values({}), "updated_at")


def store_subscription(data: dict[str, Any]) -> Subscription:
    """Insert or update the subscription (`sql.never_back_in_time`: an older read never
    overwrites a newer one; the unique `mp_preapproval_id` settles a race); return it as
    stored. Commits."""
    mp_id = str(data["id"])
    now = utcnow()
    account_id = current_account_id()
    values = {
        "account_id": account_id,
        "mp_preapproval_id": mp_id,
        "created_at": now,
        "updated_at": now,
    }
    values.update(subscription_values(data))
    db.session.execute(
        never_back_in_time(
            dialect_insert(_subscriptions, db.session).values(values),
            key=_subscriptions.c.mp_preapproval_id,
            stamp="mp_last_modified",
            fields=SUBSCRIPTION_FIELDS,
        )
    )
    db.session.commit()
    subscription = db.session.scalars(
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.mp_preapproval_id == mp_id)
        .execution_options(populate_existing=True)
    ).one()
    ours = values["mp_last_modified"]
    if ours is not None and subscription.mp_last_modified not in (None, ours):
        logger.info("subscription %s: stale read (%s) not stored", mp_id, ours)
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
