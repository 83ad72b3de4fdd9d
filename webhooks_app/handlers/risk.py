"""Fraud alerts (`stop_delivery_op_wh`) and claims (`topic_claims_integration_wh`).

Both are recorded in `mp_alerts`, tag the payer's contact (`mp-fraud-alert`,
`mp-claim`), and send one alert message (webhooks_app.alerts channels; a channel that
fails never fails the event). Both are `priority` topics: they go to the priority queue,
which workers read before the bulk one.

- A fraud alert carries no `data.id` (MercadoPago developers, "Additional information about
  notifications", "Fraud alerts"): `data: {payment_id, merchant_order, description,
  site_id}`. Its payment id (`resource_id_from`) becomes the event's resource id; the
  payment is read (`GET /v1/payments/{id}`) for its payer unless stored. It is never
  redelivered, so it is stored and answered before anything else is tried.
- A claim's notification carries the claim id in `data.id` (and `data.resource`); the claim
  is read at `GET /post-purchase/v1/claims/{claim_id}` (reference "claims/get-claim-details",
  mercadopago/devsite-docs `reference/api-json/claims_v2.json`): its `resource_id` is the
  payment when `resource` is "payment".
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError

from ..accounts import current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, MpAlert, WebhookEvent
from .base import EventRef, HandlerContext, HandlerResult
from .payer import payer_email, tag_and_alert_once

logger = logging.getLogger(__name__)

FRAUD_ALERT_TAG = "mp-fraud-alert"
CLAIM_TAG = "mp-claim"
# The notification's body is not signed: its free text is cut short and kept on one line
# before it reaches a column, an alert message or a page.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
DESCRIPTION_CHARS = 200


def record(kind: str, resource_id: str, values: dict[str, Any]) -> MpAlert:
    """Insert or update the alert (unique by kind and resource id; a race is an update)."""
    account_id = current_account_id()
    query = select(MpAlert).where(
        MpAlert.account_id == account_id,
        MpAlert.kind == kind,
        MpAlert.mp_resource_id == resource_id,
    )
    row = db.session.scalars(query).one_or_none()
    if row is None:
        row = MpAlert(account_id=account_id, kind=kind, mp_resource_id=resource_id, **values)
        db.session.add(row)
        try:
            db.session.commit()
            return row
        except IntegrityError:
            db.session.rollback()
            row = db.session.scalars(query).one()
    for name, value in values.items():
        setattr(row, name, value)
    db.session.commit()
    return row


def short_text(value: Any, limit: int = DESCRIPTION_CHARS) -> str | None:
    """A sender's free text as one short line; None for anything but a non-empty string."""
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value).strip()
    return text[:limit] or None


class FraudAlertHandler:
    """`stop_delivery_op_wh`: MercadoPago asks not to deliver the goods of a payment."""

    topics = ("stop_delivery_op_wh",)
    priority = True

    @staticmethod
    def resource_id_from(payload: dict[str, Any]) -> Any:
        """The body has no `data.id`: the alert is about the payment `data.payment_id`."""
        data = payload.get("data")
        return data.get("payment_id") if isinstance(data, dict) else None

    def lock_key(self, event: EventRef) -> str | None:
        return f"fraud_alert:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {"payment_id": event.resource_id}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        # The payment: the signed ?data.id when the query had one, else data.payment_id.
        payment_id = event.resource_id
        email = payer_email(payment_id, context.renew_lease)
        # What MercadoPago sent (the notification) is all a fraud alert is.
        payload = db.session.scalar(select(WebhookEvent.payload).where(WebhookEvent.id == event.id))
        payload = payload if isinstance(payload, dict) else {}
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        description = short_text(data.get("description"))
        row = record(
            MpAlert.FRAUD_ALERT,
            payment_id,
            {
                "mp_payment_id": payment_id,
                "status": "stop_delivery",
                "detail": description,
                "payer_email": email,
                "raw": payload or None,  # merchant_order, site_id: MpAlert.merchant_order_id
            },
        )
        order = row.merchant_order_id
        message = (
            f"Fraud alert: MercadoPago asks not to deliver payment {payment_id}"
            + (f" (merchant order {order})" if order else "")
            + f", payer {email or 'unknown'}"
            + (f": {description}" if description else "")
            + ". Hold the order."
        )
        tag_and_alert_once(row, email, FRAUD_ALERT_TAG, message, context)
        return HandlerResult(EventStatus.SUCCESS)


class ClaimHandler:
    """`topic_claims_integration_wh`: a buyer opened (or moved) a claim on a payment."""

    topics = ("topic_claims_integration_wh",)
    priority = True

    def lock_key(self, event: EventRef) -> str | None:
        return f"claim:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        with observe_api_call("mercadopago"):
            claim = mercadopago_client().get_claim(event.resource_id)
        context.renew_lease()
        payment_id = (
            str(claim["resource_id"])
            if claim.get("resource") == "payment" and claim.get("resource_id") is not None
            else None
        )
        email = payer_email(payment_id, context.renew_lease)
        row = record(
            MpAlert.CLAIM,
            str(claim["id"]),
            {
                "mp_payment_id": payment_id,
                "status": claim.get("status"),
                "detail": f"{claim.get('type')}/{claim.get('stage')}",
                "payer_email": email,
                "raw": claim,
            },
        )
        message = (
            f"Claim {claim['id']} ({claim.get('type')}, {claim.get('stage')}, "
            f"{claim.get('status')}) on payment {payment_id or 'unknown'}"
            f" (payer {email or 'unknown'})."
        )
        tag_and_alert_once(row, email, CLAIM_TAG, message, context)
        return HandlerResult(EventStatus.SUCCESS)
