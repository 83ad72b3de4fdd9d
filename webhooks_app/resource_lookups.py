"""Fetching merchant orders, chargebacks, fraud alerts and claims, and subscriptions (with
their charges) by the ids a URL or a command line gave: one set of queries for the admin,
the API and the CLI."""

from __future__ import annotations

import re

from sqlalchemy import Select, select

from .extensions import db
from .filters import CONTROL_CHARS, FilterError, of_account
from .models import MpAlert, Payment, Subscription
from .resources import AuthorizedPayment, Chargeback, MerchantOrder, MerchantOrderPayment

CHARGEBACKS_SHOWN = 100
# A subscription's charges shown with it, newest first (one a month for years fits).
CHARGES_SHOWN = 100
SUBSCRIPTION_STATUS = re.compile(r"[a-z_]{1,32}")
ALERTS_SHOWN = 100
ALERT_KINDS = (MpAlert.FRAUD_ALERT, MpAlert.CLAIM)


def _usable(mp_id: str | None) -> bool:
    """Whether an id can be looked up (the database would refuse control characters)."""
    return bool(mp_id) and len(mp_id) <= 64 and not CONTROL_CHARS.search(mp_id)


def find_merchant_order(mp_id: str, account_id: int | None = None) -> MerchantOrder | None:
    """The merchant order with this MercadoPago id (of `account_id` if given), or None."""
    if not _usable(mp_id):
        return None
    query = select(MerchantOrder).where(MerchantOrder.mp_order_id == mp_id)
    return db.session.scalars(of_account(query, MerchantOrder, account_id)).first()


def order_payments(order: MerchantOrder) -> list[Payment]:
    """The stored payments (of the order's account) the order lists."""
    ids = select(MerchantOrderPayment.mp_payment_id).where(
        MerchantOrderPayment.merchant_order_id == order.id
    )
    query = select(Payment).where(Payment.mp_payment_id.in_(ids))
    return list(db.session.scalars(of_account(query, Payment, order.account_id)))


def orders_of_payment(mp_payment_id: str, account_id: int | None = None) -> list[MerchantOrder]:
    """The merchant orders listing this payment."""
    if not _usable(mp_payment_id):
        return []
    ids = select(MerchantOrderPayment.merchant_order_id).where(
        MerchantOrderPayment.mp_payment_id == mp_payment_id
    )
    query = select(MerchantOrder).where(MerchantOrder.id.in_(ids))
    return list(db.session.scalars(of_account(query, MerchantOrder, account_id)))


def find_chargebacks(
    *,
    payment_id: str | None = None,
    documentation_status: str | None = None,
    limit: int = CHARGEBACKS_SHOWN,
    account_id: int | None = None,
) -> list[Chargeback]:
    """Chargebacks, newest first, optionally of one payment or documentation status."""
    query = select(Chargeback).order_by(Chargeback.id.desc()).limit(limit)
    query = of_account(query, Chargeback, account_id)
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
    *,
    kind: str | None = None,
    payment_id: str | None = None,
    limit: int = ALERTS_SHOWN,
    account_id: int | None = None,
) -> list[MpAlert]:
    """Fraud alerts and claims (`mp_alerts`), newest first, optionally of one kind or one
    payment; FilterError for a kind that is neither."""
    if kind is not None and kind not in ALERT_KINDS:
        raise FilterError("kind", f"must be one of {', '.join(ALERT_KINDS)}")
    # Few rows (alerts are rare): no index on the payment id is needed to stay fast.
    query = select(MpAlert).order_by(MpAlert.id.desc()).limit(limit)
    query = of_account(query, MpAlert, account_id)
    if kind is not None:
        query = query.where(MpAlert.kind == kind)
    if payment_id is not None:
        if not _usable(payment_id):
            return []
        query = query.where(MpAlert.mp_payment_id == payment_id)
    return list(db.session.scalars(query))


def subscriptions_query(status: str | None = None, account_id: int | None = None) -> Select:
    """Subscriptions, of one status if given (`authorized` …); FilterError for a bad one."""
    query = of_account(select(Subscription), Subscription, account_id)
    if status:
        if not SUBSCRIPTION_STATUS.fullmatch(status):
            raise FilterError("status", "must be a subscription status such as authorized")
        query = query.where(Subscription.status == status)
    return query


def find_subscription(mp_id: str, account_id: int | None = None) -> Subscription | None:
    """The subscription with this MercadoPago (preapproval) id (of `account_id`), or None."""
    if not _usable(mp_id):
        return None
    query = select(Subscription).where(Subscription.mp_preapproval_id == mp_id)
    return db.session.scalars(of_account(query, Subscription, account_id)).first()


def subscription_charges(
    subscription: Subscription, limit: int = CHARGES_SHOWN
) -> list[AuthorizedPayment]:
    """Its charges (authorized payments), latest debit first; by preapproval id, so that a
    charge stored before its subscription (and not linked yet) is listed too."""
    return list(
        db.session.scalars(
            select(AuthorizedPayment)
            .where(
                AuthorizedPayment.account_id == subscription.account_id,
                AuthorizedPayment.mp_preapproval_id == subscription.mp_preapproval_id,
            )
            .order_by(AuthorizedPayment.debit_date.desc().nulls_last(), AuthorizedPayment.id.desc())
            .limit(limit)
        )
    )


def charge_payments(charges: list[AuthorizedPayment]) -> dict[str, Payment]:
    """The stored payments the charges made (in the charges' accounts), by MercadoPago id."""
    ids = [charge.mp_payment_id for charge in charges if charge.mp_payment_id]
    if not ids:
        return {}
    accounts = {charge.account_id for charge in charges}
    payments = db.session.scalars(
        select(Payment).where(Payment.mp_payment_id.in_(ids), Payment.account_id.in_(accounts))
    )
    return {payment.mp_payment_id: payment for payment in payments}


def charges_of_payment(
    mp_payment_id: str, account_id: int | None = None
) -> list[AuthorizedPayment]:
    """The subscription charges that made this payment (one, normally)."""
    if not _usable(mp_payment_id):
        return []
    query = select(AuthorizedPayment).where(AuthorizedPayment.mp_payment_id == mp_payment_id)
    return list(db.session.scalars(of_account(query, AuthorizedPayment, account_id)))
