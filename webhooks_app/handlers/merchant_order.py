"""The `merchant_order` topic: MercadoPago merchant order -> `merchant_orders` row -> its payments.

A Checkout Pro merchant often hears of the order before any of its payments, and the
order's `payer` carries no e-mail (MercadoPago deprecated it): so each payment the order
lists that we lack, or hold an older copy of, becomes a `payment` event through the
normal ingest path, processed, locked and retried as any payment (which tags the contact
by the payment's payer e-mail). Its webhook id is `order:<order>:payment:<payment>:<last
modified>`: a redelivered order creates nothing twice (as catch-up does; `follow_up`).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select

from ..accounts import current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus
from ..resources import MerchantOrder, MerchantOrderPayment
from ..sql import dialect_insert, never_back_in_time
from ..timeutil import parse_iso, utcnow
from .base import EventRef, HandlerContext, HandlerResult
from .follow_up import payment_is_current, queue_event
from .values import decimal_or_none

logger = logging.getLogger(__name__)

SOURCE = "merchant_order"


class MerchantOrderHandler:
    """Fetch the order, store it with its payments' ids, and queue the payments we lack."""

    # Webhooks: `topic_merchant_order_wh` (newer integrations), `merchant_order` (older
    # ones and IPN's topic=merchant_order). MercadoPago developers, "Notifications".
    topics = ("merchant_order", "topic_merchant_order_wh")

    def lock_key(self, event: EventRef) -> str | None:
        return f"merchant_order:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        with observe_api_call("mercadopago"):
            data = mercadopago_client().get_merchant_order(event.resource_id)
        context.renew_lease()
        store_merchant_order(data)
        context.renew_lease()
        created = queue_missing_payments(data)
        if created:
            logger.info(
                "merchant order %s: %d payment event(s) created", data.get("id"), len(created)
            )
        # The order has no e-mail: its payments' events sync the contact.
        return HandlerResult(EventStatus.SUCCESS)


_orders = MerchantOrder.__table__
_links = MerchantOrderPayment.__table__
ORDER_FIELDS = (
    "status",
    "order_status",
    "total_amount",
    "paid_amount",
    "currency",
    "external_reference",
    "preference_id",
    "payment_ids",
    "mp_last_updated",
    "raw",
    "updated_at",
)


def payment_ids(data: dict[str, Any]) -> list[str]:
    """The ids of the payments the order lists, in its order."""
    return [str(p["id"]) for p in data.get("payments") or [] if isinstance(p, dict) and p.get("id")]


def store_merchant_order(data: dict[str, Any]) -> int:
    """Upsert the order (never back in time) and its payment links, in one transaction."""
    now = utcnow()
    ids = payment_ids(data)
    payments = [p for p in data.get("payments") or [] if isinstance(p, dict)]
    values = {
        "mp_order_id": str(data["id"]),
        "created_at": now,
        "status": data.get("status"),
        "order_status": data.get("order_status"),
        "total_amount": decimal_or_none(data.get("total_amount")),
        "paid_amount": decimal_or_none(data.get("paid_amount")),
        "currency": next((p.get("currency_id") for p in payments if p.get("currency_id")), None),
        "external_reference": data.get("external_reference"),
        "preference_id": data.get("preference_id"),
        "payment_ids": ids,
        "mp_last_updated": parse_iso(data.get("last_updated")),
        "raw": data,
        "updated_at": now,
    }
    values["account_id"] = current_account_id()
    statement = never_back_in_time(
        dialect_insert(_orders, db.session).values(values),
        key=_orders.c.mp_order_id,
        stamp="mp_last_updated",
        fields=ORDER_FIELDS,
    )
    db.session.execute(statement)
    order_id = db.session.scalar(
        select(_orders.c.id).where(
            _orders.c.account_id == values["account_id"],
            _orders.c.mp_order_id == values["mp_order_id"],
        )
    )
    if ids:
        links = dialect_insert(_links, db.session).values(
            [{"merchant_order_id": order_id, "mp_payment_id": pid} for pid in ids]
        )
        db.session.execute(links.on_conflict_do_nothing())
    db.session.commit()
    return order_id


def queue_missing_payments(data: dict[str, Any]) -> list[int]:
    """Create a `payment` event for each listed payment we lack or hold an older copy of."""
    created = []
    for summary in data.get("payments") or []:
        if not isinstance(summary, dict) or not summary.get("id"):
            continue
        payment_id = str(summary["id"])
        modified = summary.get("last_modified") or summary.get("date_created")
        if payment_is_current(payment_id, modified=parse_iso(modified)):
            continue
        event_id = queue_event(
            event_type="payment",
            resource_id=payment_id,
            webhook_id=f"order:{data['id']}:payment:{payment_id}:{modified or 'unknown'}",
            source=SOURCE,
            action="merchant_order",
            payload={"merchant_order_id": data["id"], "payment": summary},
        )
        if event_id is not None:
            created.append(event_id)
    db.session.commit()  # end the read transaction: the attempt writes its outcome next
    return created
