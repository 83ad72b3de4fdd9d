"""Fetching merchant orders and chargebacks by the ids a URL or a command line gave."""

from __future__ import annotations

from sqlalchemy import select

from .extensions import db
from .filters import CONTROL_CHARS
from .models import Payment
from .resources import Chargeback, MerchantOrder, MerchantOrderPayment

CHARGEBACKS_SHOWN = 100


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
