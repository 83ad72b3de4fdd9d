"""What chargebacks, fraud alerts and claims share: the payer of a payment, and the
"tag the payer, then alert once" step.

One path for all three, so that they find the payer, tag the contact and send their one
alert message (webhooks_app.alerts) the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy import select

from ..accounts import current_account_id
from ..alerts import send_alert
from ..clients import mercadopago_client
from ..crm import no_op
from ..extensions import db
from ..metrics import observe_api_call
from ..models import Payment
from ..timeutil import utcnow
from .base import HandlerContext

logger = logging.getLogger(__name__)


class Alerted(Protocol):
    """A row that is tagged in the CRM and alerted once (a chargeback, an `mp_alerts` row)."""

    ghl_contact_id: str | None
    alerted_at: datetime | None


def payer_email(mp_payment_id: str | None, renew_lease: Callable[[], None] = no_op) -> str | None:
    """The payment's payer e-mail: the stored payment's, else MercadoPago's."""
    if not mp_payment_id:
        return None
    email = db.session.scalar(
        select(Payment.payer_email).where(
            Payment.account_id == current_account_id(), Payment.mp_payment_id == mp_payment_id
        )
    )
    db.session.commit()  # no transaction stays open across the API call
    if email:
        return email
    with observe_api_call("mercadopago"):
        payment = mercadopago_client().get_payment(mp_payment_id)
    renew_lease()
    return (payment.get("payer") or {}).get("email") or None


def tag_and_alert_once(
    row: Alerted, email: str | None, tag: str | None, message: str, context: HandlerContext
) -> None:
    """Tag the payer's contact (when there is an e-mail and a tag), then send the alert once.

    The alert is marked sent (`alerted_at`) even when a channel failed: one message per row,
    never one per retry; a failing channel is logged by `send_alert` and never raises. Two
    events about one row never run at once (their handler's lock), so no second message.
    """
    if email and tag:
        contact_id = context.crm.tag(email, add=[tag], renew_lease=context.renew_lease)
        if contact_id != row.ghl_contact_id:
            row.ghl_contact_id = contact_id
            db.session.commit()
    elif not email:
        logger.info("no payer e-mail: no contact tagged")  # the event's fields are bound
    if row.alerted_at is None:
        send_alert(message)
        row.alerted_at = utcnow()
        db.session.commit()
