"""Fraud alerts (`stop_delivery_op_wh`) and claims (`topic_claims_integration_wh`).

Both are recorded in `mp_alerts`, tag the payer's contact (`mp-fraud-alert`,
`mp-claim`), and send one alert message (webhooks_app.alerts channels; a channel that
fails never fails the event). Both are `priority` topics: they go to the priority queue,
which workers read before the bulk one.

- A fraud alert's notification carries the payment's id (`data.id`): the payment is read
  (`GET /v1/payments/{id}`) for its payer.
- A claim is read at `GET /post-purchase/v1/claims/{claim_id}` (mercadopago.com
  developers, reference "claims/get-claim-details"); its `resource_id` is the payment
  when `resource` is "payment".
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError

from ..alerts import send_alert
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, MpAlert, Payment, WebhookEvent
from ..timeutil import utcnow
from .base import EventRef, HandlerContext, HandlerResult

logger = logging.getLogger(__name__)

FRAUD_ALERT_TAG = "mp-fraud-alert"
CLAIM_TAG = "mp-claim"


def _payer_email(mp_payment_id: str | None, context: HandlerContext) -> str | None:
    """The payment's payer e-mail: the stored payment's, else MercadoPago's."""
    if not mp_payment_id:
        return None
    stored = db.session.scalar(
        select(Payment.payer_email).where(Payment.mp_payment_id == mp_payment_id)
    )
    if stored:
        return stored
    with observe_api_call("mercadopago"):
        payment = mercadopago_client().get_payment(mp_payment_id)
    context.renew_lease()
    return (payment.get("payer") or {}).get("email") or None


def record(kind: str, resource_id: str, values: dict[str, Any]) -> MpAlert:
    """Insert or update the alert (unique by kind and resource id; a race is an update)."""
    query = select(MpAlert).where(MpAlert.kind == kind, MpAlert.mp_resource_id == resource_id)
    row = db.session.scalars(query).one_or_none()
    if row is None:
        row = MpAlert(kind=kind, mp_resource_id=resource_id, **values)
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


def tag_and_alert(row: MpAlert, tag: str, message: str, context: HandlerContext) -> None:
    """Tag the payer's contact, then send the alert once (recorded in `alerted_at`)."""
    if row.payer_email:
        contact_id = context.crm.tag(row.payer_email, add=[tag], renew_lease=context.renew_lease)
        if contact_id != row.ghl_contact_id:
            row.ghl_contact_id = contact_id
            db.session.commit()
    if row.alerted_at is None:
        send_alert(message)
        row.alerted_at = utcnow()
        db.session.commit()


class FraudAlertHandler:
    """`stop_delivery_op_wh`: MercadoPago asks not to deliver the goods of a payment."""

    topics = ("stop_delivery_op_wh",)
    priority = True

    def lock_key(self, event: EventRef) -> str | None:
        return f"fraud_alert:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {"payment_id": event.resource_id}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        payment_id = event.resource_id
        email = _payer_email(payment_id, context)
        # What MercadoPago sent (the notification) is all a fraud alert is.
        payload = db.session.scalar(select(WebhookEvent.payload).where(WebhookEvent.id == event.id))
        row = record(
            MpAlert.FRAUD_ALERT,
            payment_id,
            {
                "mp_payment_id": payment_id,
                "status": "stop_delivery",
                "detail": payload.get("action") if isinstance(payload, dict) else None,
                "payer_email": email,
                "raw": payload if isinstance(payload, dict) else None,
            },
        )
        message = (
            f"Fraud alert: MercadoPago asks not to deliver payment {payment_id}"
            f" (payer {email or 'unknown'}). Hold the order."
        )
        tag_and_alert(row, FRAUD_ALERT_TAG, message, context)
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
        email = _payer_email(payment_id, context)
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
        tag_and_alert(row, CLAIM_TAG, message, context)
        return HandlerResult(EventStatus.SUCCESS)
