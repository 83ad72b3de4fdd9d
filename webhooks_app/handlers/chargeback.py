"""The `chargebacks` topic: MercadoPago chargeback -> `chargebacks` row -> CRM tag -> alert.

The chargeback is recorded against its payment(s); the payer (the stored payment's
e-mail, else the payment read from MercadoPago) is tagged CHARGEBACK_TAG; and one alert
goes out per new chargeback (`alerted_at`), never failing the attempt when it cannot be
sent. Every step is idempotent: the upsert never goes back in time, tagging twice keeps
one tag, and the alert is sent once its chargeback is stored and tagged.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select

from ..accounts import account_config, current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus
from ..resources import Chargeback
from ..sql import dialect_insert, never_back_in_time
from ..timeutil import parse_iso, utcnow
from .base import EventRef, HandlerContext, HandlerResult
from .payer import payer_email, tag_and_alert_once
from .values import bool_or_none, decimal_or_none

logger = logging.getLogger(__name__)


class ChargebackHandler:
    """Fetch the chargeback, record it, tag the payer, alert once."""

    # Webhooks: `topic_chargebacks_wh` (newer integrations), `chargebacks` (older ones,
    # and IPN's topic=chargebacks). MercadoPago developers, "Chargebacks: notifications".
    topics = ("chargebacks", "topic_chargebacks_wh")

    def lock_key(self, event: EventRef) -> str | None:
        return f"chargeback:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        with observe_api_call("mercadopago"):
            data = mercadopago_client().get_chargeback(event.resource_id)
        context.renew_lease()
        chargeback = store_chargeback(data)
        context.renew_lease()
        email = payer_email(chargeback.mp_payment_id, context.renew_lease)
        tag = account_config()["CHARGEBACK_TAG"]
        tag_and_alert_once(chargeback, email, tag, alert_message(chargeback, email), context)
        # No transaction left open: the attempt writes its outcome in a statement of its own.
        db.session.commit()
        return HandlerResult(EventStatus.SUCCESS)


_chargebacks = Chargeback.__table__
CHARGEBACK_FIELDS = (
    "mp_payment_id",
    "payment_ids",
    "amount",
    "currency",
    "coverage_applied",
    "coverage_eligible",
    "documentation_required",
    "documentation_status",
    "date_documentation_deadline",
    "mp_date_created",
    "mp_date_last_updated",
    "raw",
    "updated_at",
)


def store_chargeback(data: dict[str, Any]) -> Chargeback:
    """Upsert the chargeback (never back in time); return it as stored."""
    now = utcnow()
    ids = [str(p) for p in data.get("payments") or [] if p is not None]
    values = {
        "mp_chargeback_id": str(data["id"]),
        "created_at": now,
        "mp_payment_id": ids[0] if ids else None,
        "payment_ids": ids,
        "amount": decimal_or_none(data.get("amount")),
        "currency": data.get("currency"),
        "coverage_applied": bool_or_none(data.get("coverage_applied")),
        # MercadoPago's spelling (reference/chargebacks/resource); the fixed one, just in case.
        "coverage_eligible": bool_or_none(
            data.get("coverage_elegible", data.get("coverage_eligible"))
        ),
        "documentation_required": bool_or_none(data.get("documentation_required")),
        "documentation_status": data.get("documentation_status"),
        "date_documentation_deadline": parse_iso(data.get("date_documentation_deadline")),
        "mp_date_created": parse_iso(data.get("date_created")),
        "mp_date_last_updated": parse_iso(data.get("date_last_updated")),
        "raw": data,
        "updated_at": now,
    }
    values["account_id"] = current_account_id()
    statement = never_back_in_time(
        dialect_insert(_chargebacks, db.session).values(values),
        key=_chargebacks.c.mp_chargeback_id,
        stamp="mp_date_last_updated",
        fields=CHARGEBACK_FIELDS,
    )
    db.session.execute(statement)
    db.session.commit()
    return db.session.scalars(
        select(Chargeback).where(
            Chargeback.account_id == values["account_id"],
            Chargeback.mp_chargeback_id == values["mp_chargeback_id"],
        )
    ).one()


def alert_message(chargeback: Chargeback, email: str | None) -> str:
    """The one alert message of a new chargeback."""
    return (
        f"New chargeback {chargeback.mp_chargeback_id} on payment(s) "
        f"{', '.join(chargeback.payment_ids or []) or '?'}: "
        f"{chargeback.amount} {chargeback.currency or ''} "
        f"(payer {email or 'unknown'}; documentation {chargeback.documentation_status}, "
        f"deadline {chargeback.date_documentation_deadline or '?'})."
    )
