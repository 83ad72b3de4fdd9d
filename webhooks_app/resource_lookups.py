"""Fetching merchant orders, chargebacks, fraud alerts and claims by the ids a URL or a
command line gave."""

from __future__ import annotations

from sqlalchemy import select

from .extensions import db
from .filters import CONTROL_CHARS, FilterError
from .models import MpAlert, Payment
from .resources import Chargeback, MerchantOrder, MerchantOrderPayment

CHARGEBACKS_SHOWN = 100
ALERTS_SHOWN = 100
ALERT_KINDS = (MpAlert.FRAUD_ALERT, MpAlert.CLAIM)


def _usable(mp_id: str | None) -> bool:
    """Whether an id can be looked up (the database would refuse control characters)."""
    return bool(mp_id) and len(mp_id) <= 64 and not CONTROL_CHARS.search(mp_id)


def find_merchant_order(mp_id: str) -> MerchantOrder | None:
    """The merchant order with this MercadoPago id, or None."""
    if not _usable(mp_id):
        return None
    return db.session.scalars(
        select(MerchantOrder).where(MerchantOrder.mp_order_id == mp_id)
    ).first()


def order_payments(order: MerchantOrder) -> list[Payment]:
    """The stored payments the order lists."""
    ids = select(MerchantOrderPayment.mp_payment_id).where(
        MerchantOrderPayment.merchant_order_id == order.id
    )
    return list(db.session.scalars(select(Payment).where(Payment.mp_payment_id.in_(ids))))


def orders_of_payment(mp_payment_id: str) -> list[MerchantOrder]:
    """The merchant orders listing this payment."""
    if not _usable(mp_payment_id):
        return []
    ids = select(MerchantOrderPayment.merchant_order_id).where(
        MerchantOrderPayment.mp_payment_id == mp_payment_id
    )
    return list(db.session.scalars(select(MerchantOrder).where(MerchantOrder.id.in_(ids))))


def find_chargebacks(
    *,
    payment_id: str | None = None,
    documentation_status: str | None = None,
    limit: int = CHARGEBACKS_SHOWN,
) -> list[Chargeback]:
    """Chargebacks, newest first, optionally of one payment or documentation status."""
    query = select(Chargeback).order_by(Chargeback.id.desc()).limit(limit)
    if payment_id is not None:
        if not _usable(payment_id):
            return []
        query = query.where(Chargeback.mp_payment_id == payment_id)
    if documentation_status is not None:
        if not _usable(documentation_status):
            return []
        query = query.where(Chargeback.documentation_status == documentation_status)
    return list(db.session.scalars(query))


def find_alerts(
    *, kind: str | None = None, payment_id: str | None = None, limit: int = ALERTS_SHOWN
) -> list[MpAlert]:
    """Fraud alerts and claims (`mp_alerts`), newest first, optionally of one kind or one
    payment; FilterError for a kind that is neither."""
    if kind is not None and kind not in ALERT_KINDS:
        raise FilterError("kind", f"must be one of {', '.join(ALERT_KINDS)}")
    # Few rows (alerts are rare): no index on the payment id is needed to stay fast.
    query = select(MpAlert).order_by(MpAlert.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(MpAlert.kind == kind)
    if payment_id is not None:
        if not _usable(payment_id):
            return []
        query = query.where(MpAlert.mp_payment_id == payment_id)
    return list(db.session.scalars(query))
