"""The `payment` topic: MercadoPago payment -> `payments` row (linked to the event) -> CRM.

Every step is idempotent, so an attempt that failed half-way can simply run
again: the payment upsert never lets an older read overwrite a newer one, and the
CRM sync is idempotent too (see `crm`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import Row, bindparam, select, update

from ..accounts import current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, Payment, WebhookEvent
from ..pii import mask_payment
from ..sql import (
    INSERTS,
    dialect_name,
    execute_alone,
    never_back_in_time,
    one_statement_transactions,
)
from ..timeutil import parse_iso, utcnow
from .base import EventRef, HandlerContext, HandlerResult
from .values import decimal_or_none

logger = logging.getLogger(__name__)


class PaymentHandler:
    """Fetch the payment, upsert it with the event's link to it, sync the payer to the CRM."""

    topics = ("payment",)

    def lock_key(self, event: EventRef) -> str | None:
        return f"payment:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {"payment_id": event.resource_id}

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        """The payment is committed before the CRM calls (no transaction stays open across
        them); what those calls change on it is returned, for the caller to write with the
        attempt's outcome."""
        # A 404 propagates: retried (a live payment may not be readable yet), or the event
        # ignored if it is MercadoPago's test notification (`handlers.handle_event`).
        with observe_api_call("mercadopago"):
            data = mercadopago_client().get_payment(event.resource_id)
        context.renew_lease()
        payment = store_payment(event, data)
        context.renew_lease()
        return HandlerResult(EventStatus.SUCCESS, context.crm.sync(payment, context.renew_lease))


_events = WebhookEvent.__table__

# Built once, like the upsert below; `updated_at` is set by the column's onupdate.
_LINK_PAYMENT = (
    update(_events)
    .where(_events.c.id == bindparam("event_id"))
    .values(payment_id=bindparam("new_payment_id"))
)


def store_payment(event: Row[Any], data: dict[str, Any]) -> Row[Any]:
    """Upsert the payment and link the event to it, in one transaction; return the payment.

    On PostgreSQL both are one statement (`WITH upserted AS (INSERT …) UPDATE …`), run
    in autocommit; when our read loses to a newer stored row it returns nothing, and
    the stored row is read and linked below, as on SQLite.
    """
    if one_statement_transactions(db.session):
        values = _payment_values(data)
        payment = execute_alone(
            db.session, _upsert_and_link_statement(), {**values, "event_id": event.id}
        )
        if payment is not None:
            return payment
        # Our read is older than the stored row, which stays as it is.
        payment = db.session.execute(_READ_PAYMENT, values).one()
    else:
        payment = upsert_payment(data)
    if event.payment_id != payment.id:  # already linked (a retry): no UPDATE, as with the ORM
        db.session.execute(_LINK_PAYMENT, {"event_id": event.id, "new_payment_id": payment.id})
    db.session.commit()  # the payment and its link to the event, together
    return payment


# The columns an upsert writes (on insert also mp_payment_id and created_at).
PAYMENT_FIELDS = (
    "status",
    "status_detail",
    "amount",
    "currency",
    "payer_email",
    "external_reference",
    "mp_date_last_updated",
    "raw",
    "updated_at",
)

_payments = Payment.__table__
# What the rest of an attempt reads of the payment (RETURNING, or the stored row).
PAYMENT_STATE = (
    _payments.c.id,
    _payments.c.mp_payment_id,
    _payments.c.status,
    _payments.c.status_detail,
    _payments.c.payer_email,
    _payments.c.amount,
    _payments.c.currency,
    _payments.c.external_reference,
    _payments.c.raw,
    _payments.c.ghl_contact_id,
    _payments.c.tags_applied,
    _payments.c.mp_date_last_updated,
    _payments.c.crm_synced_at,
)
_READ_PAYMENT = select(*PAYMENT_STATE).where(
    _payments.c.account_id == bindparam("new_account_id"),
    _payments.c.mp_payment_id == bindparam("new_mp_payment_id"),
)


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """The payment upsert for `dialect`, built once: building it (the `excluded` alias,
    the coercions) cost more CPU than executing it. Values are bound at execution.

    A Core statement returning a row, not the ORM's `Payment`: the ORM's bulk-insert
    path and the flush of the GHL fields after it cost 1.5–3 ms of a worker's CPU per
    event (BENCHMARKS.md, Improvement 8)."""
    insert = INSERTS[dialect]
    # Bind names must differ from the column names (SQLAlchemy reserves those).
    names = ("account_id", "mp_payment_id", "created_at", *PAYMENT_FIELDS)
    statement = insert(_payments).values({name: bindparam(f"new_{name}") for name in names})
    return never_back_in_time(
        statement,
        key=_payments.c.mp_payment_id,
        stamp="mp_date_last_updated",
        fields=PAYMENT_FIELDS,
    ).returning(*PAYMENT_STATE)


@functools.cache
def _upsert_and_link_statement() -> Any:
    """PostgreSQL: the payment upsert and the event's link to it, as one statement."""
    upserted = _upsert_statement("postgresql").cte("upserted")
    link = (
        update(_events)
        .where(_events.c.id == bindparam("event_id"))
        .where(_events.c.payment_id.is_distinct_from(upserted.c.id))
        # A column's onupdate is not applied inside a WITH: `updated_at` is set here.
        .values(payment_id=upserted.c.id, updated_at=bindparam("new_updated_at"))
        .cte("linked")
    )
    return select(*(upserted.c[column.name] for column in PAYMENT_STATE)).add_cte(link)


def upsert_payment(data: dict[str, Any]) -> Row[Any]:
    """Insert or update the payment from MercadoPago's data; never go back in time.

    One `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING` statement: the unique
    constraint decides who creates the row when two workers race, and the WHERE keeps
    a row whose `mp_date_last_updated` is newer than ours (then nothing is returned and
    the stored row is read instead). Returns the payment's row as stored (the columns of
    `PAYMENT_STATE`). Leaves the transaction open: the caller commits (with whatever
    else belongs to it).
    """
    values = _payment_values(data)
    statement = _upsert_statement(dialect_name(db.session))
    payment = db.session.execute(statement, values).one_or_none()
    if payment is not None:
        return payment
    # Our read is older than the stored row, which stays as it is.
    return db.session.execute(_READ_PAYMENT, values).one()


def _payment_values(data: dict[str, Any]) -> dict[str, Any]:
    """The upsert's bound values (`new_<column>`) for MercadoPago's payment data."""
    payer = data.get("payer") or {}
    now = utcnow()
    values = {
        "account_id": current_account_id(),
        "mp_payment_id": str(data["id"]),
        "created_at": now,
        "status": data.get("status"),
        "status_detail": data.get("status_detail"),
        "amount": decimal_or_none(data.get("transaction_amount")),
        "currency": data.get("currency_id"),
        "payer_email": (payer.get("email") or None),
        "external_reference": data.get("external_reference"),
        "mp_date_last_updated": parse_iso(data.get("date_last_updated")),
        "raw": mask_payment(data),  # as is, or masked with PII_MASKING (webhooks_app/pii.py)
        "updated_at": now,
    }
    return {f"new_{name}": value for name, value in values.items()}
