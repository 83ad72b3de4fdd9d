"""The `subscription_authorized_payment` topic: one recurring charge of a subscription.

MercadoPago notifies each charge of a subscription ("Recurring payment of a subscription
(creation - update)", panel name "Plans and Subscriptions"; mercadopago/devsite-docs
`guides/additional-content/your-integrations/notifications.en.md`). The charge is read at
`GET /authorized_payments/{id}` and upserted in `authorized_payments` (never back in time:
MercadoPago's `last_modified`), linked to its stored subscription. It tags no contact
itself; what it names does, as events created through the normal ingest path
(`follow_up.queue_event`, source `authorized_pay`, deterministic webhook ids):

- its subscription (`preapproval_id`), when not stored yet: a `subscription_preapproval`
  event, whose handler tags the subscriber `mp-subscription-<status>` and links the charge;
- the payment it made (`payment.id`), when we lack it or hold it in another status: a
  `payment` event, processed as any payment (upsert, `mp-payment-<status>` tag).

MercadoPago asks to activate the `payment` topic as well (devsite-docs
`notification-additional-info.en.md`); its notification of the payment and ours meet at
the payment's lock and its never-back-in-time upsert. The payer is the subscription's:
the charge's one personal datum, MercadoPago's `payer_id`, is not stored (nothing here
for an erasure to find).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select, update

from ..accounts import current_account_id
from ..clients import mercadopago_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import EventStatus, Subscription
from ..resources import AuthorizedPayment
from ..sql import dialect_insert, never_back_in_time
from ..timeutil import isoformat, parse_iso, utcnow
from .base import EventRef, HandlerContext, HandlerResult
from .follow_up import payment_is_current, queue_event
from .values import decimal_or_none, int_or_none

logger = logging.getLogger(__name__)

TOPIC = "subscription_authorized_payment"
# The source of the events it creates (`webhook_events.source` is a String(16)).
SOURCE = "authorized_pay"
# Left out of the stored copy: the payer's MercadoPago user id (see the module's docstring).
PERSONAL_FIELDS = ("payer_id",)


class AuthorizedPaymentHandler:
    """Fetch the charge, store it linked to its subscription, queue what it names we lack."""

    topics = (TOPIC,)

    def lock_key(self, event: EventRef) -> str | None:
        return f"authorized_payment:{event.resource_id}"

    def log_fields(self, event: EventRef) -> dict[str, Any]:
        return {}  # its payment is known only once read

    def handle(self, event: Row[Any], context: HandlerContext) -> HandlerResult:
        # A 404 propagates: retried (a live charge may not be readable yet), or ignored if
        # it is MercadoPago's test notification (`handlers.handle_event`).
        with observe_api_call("mercadopago"):
            data = mercadopago_client().get_authorized_payment(event.resource_id)
        context.renew_lease()
        charge = store_authorized_payment(data)
        context.renew_lease()
        created = queue_what_it_names(charge)
        if created:
            logger.info(
                "authorized payment %s: %d event(s) created",
                charge.mp_authorized_payment_id,
                len(created),
            )
        return HandlerResult(EventStatus.SUCCESS)


_charges = AuthorizedPayment.__table__
FIELDS = (
    "mp_preapproval_id",
    "mp_payment_id",
    "status",
    "payment_status",
    "payment_status_detail",
    "amount",
    "currency",
    "debit_date",
    "retry_attempt",
    "reason",
    "external_reference",
    "mp_last_modified",
    "raw",
    "updated_at",
)


def _text(value: Any, length: int) -> str | None:
    """A JSON value as a string that fits its column (None for null)."""
    return None if value is None else str(value)[:length]


def authorized_payment_values(data: dict[str, Any]) -> dict[str, Any]:
    """The row's columns from MercadoPago's authorized payment (sdk-nodejs `InvoiceResponse`)."""
    payment = data.get("payment") if isinstance(data.get("payment"), dict) else {}
    return {
        "mp_preapproval_id": _text(data.get("preapproval_id"), 64),
        "mp_payment_id": _text(payment.get("id"), 64),
        "status": _text(data.get("status"), 32),
        "payment_status": _text(payment.get("status"), 32),
        "payment_status_detail": _text(payment.get("status_detail"), 128),
        "amount": decimal_or_none(data.get("transaction_amount")),
        "currency": _text(data.get("currency_id"), 8),
        "debit_date": parse_iso(data.get("debit_date")),
        "retry_attempt": int_or_none(data.get("retry_attempt")),
        "reason": _text(data.get("reason"), 255),
        "external_reference": _text(data.get("external_reference"), 255),
        "mp_last_modified": parse_iso(data.get("last_modified")),
        "raw": {key: value for key, value in data.items() if key not in PERSONAL_FIELDS},
    }


def store_authorized_payment(data: dict[str, Any]) -> AuthorizedPayment:
    """Upsert the charge (never back in time), link it to its subscription; return it.

    One `INSERT … ON CONFLICT DO UPDATE … WHERE`: the unique id decides who creates the row
    when two workers race, and the WHERE keeps a row whose `mp_last_modified` is newer.
    """
    mp_id = str(data["id"])
    now = utcnow()
    account_id = current_account_id()
    values = {
        "account_id": account_id,
        "mp_authorized_payment_id": mp_id,
        "created_at": now,
        "updated_at": now,
        **authorized_payment_values(data),
    }
    statement = dialect_insert(_charges, db.session).values(values)
    db.session.execute(
        never_back_in_time(
            statement,
            key=_charges.c.mp_authorized_payment_id,
            stamp="mp_last_modified",
            fields=FIELDS,
        )
    )
    db.session.commit()
    if values["mp_preapproval_id"]:
        link_to_subscription(values["mp_preapproval_id"])
    charge = db.session.scalars(
        select(AuthorizedPayment).where(
            AuthorizedPayment.account_id == account_id,
            AuthorizedPayment.mp_authorized_payment_id == mp_id,
        )
    ).one()
    if values["mp_last_modified"] and charge.mp_last_modified != values["mp_last_modified"]:
        logger.info("authorized payment %s: stale read not stored", mp_id)
    return charge


def link_to_subscription(mp_preapproval_id: str) -> None:
    """Link the subscription's unlinked charges to its stored row, if any. Commits.

    Called by both handlers after each committed its own row (the charge, the
    subscription), so whichever runs second sees both: no interleaving leaves one unlinked.
    """
    subscription_id = (
        select(Subscription.id)
        .where(
            Subscription.account_id == current_account_id(),
            Subscription.mp_preapproval_id == mp_preapproval_id,
        )
        .scalar_subquery()
    )
    db.session.execute(
        update(_charges)
        .where(
            _charges.c.account_id == current_account_id(),
            _charges.c.mp_preapproval_id == mp_preapproval_id,
            _charges.c.subscription_id.is_(None),
        )
        .values(subscription_id=subscription_id)
    )
    db.session.commit()


def queue_what_it_names(charge: AuthorizedPayment) -> list[int]:
    """Events for its subscription if not stored, and for its payment if we lack it or hold
    it in another status than the charge says (from the stored row: the newest read)."""
    mp_id = charge.mp_authorized_payment_id
    created: list[int | None] = []
    preapproval_id = charge.mp_preapproval_id
    if preapproval_id and charge.subscription_id is None:
        created.append(
            queue_event(
                event_type="subscription_preapproval",
                resource_id=preapproval_id,
                webhook_id=f"authorized_payment:{mp_id}:preapproval:{preapproval_id}",
                source=SOURCE,
                action="authorized_payment",
                payload={"authorized_payment_id": mp_id, "preapproval_id": preapproval_id},
            )
        )
    payment_id = charge.mp_payment_id
    if payment_id and not payment_is_current(
        payment_id, status=charge.payment_status, status_detail=charge.payment_status_detail
    ):
        state = f"{charge.payment_status or 'unknown'}:{isoformat(charge.mp_last_modified)}"
        created.append(
            queue_event(
                event_type="payment",
                resource_id=payment_id,
                webhook_id=f"authorized_payment:{mp_id}:payment:{payment_id}:{state}",
                source=SOURCE,
                action="authorized_payment",
                payload={
                    "authorized_payment_id": mp_id,
                    "payment": {
                        "id": payment_id,
                        "status": charge.payment_status,
                        "status_detail": charge.payment_status_detail,
                    },
                },
            )
        )
    db.session.commit()  # end the read transaction: the attempt writes its outcome next
    return [event_id for event_id in created if event_id is not None]
