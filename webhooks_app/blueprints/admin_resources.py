"""Admin pages of merchant orders, chargebacks, fraud alerts and claims, and subscriptions
with their charges (on the `admin` blueprint: same login)."""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from ..filters import FilterError, parse_account, parse_int
from ..models import Subscription
from ..pagination import keyset_page
from ..resource_lookups import (
    ALERT_KINDS,
    charge_payments,
    charges_of_payment,
    find_alerts,
    find_chargebacks,
    find_merchant_order,
    find_subscription,
    order_payments,
    orders_of_payment,
    subscription_charges,
    subscriptions_query,
)
from .admin import PAGE_SIZES, bp, find_in_account


@bp.get("/merchant-orders/<mp_id>")
def merchant_order(mp_id: str) -> ResponseReturnValue:
    """One merchant order, with the payments it lists."""
    order = find_in_account(find_merchant_order, mp_id)
    if order is None:
        abort(404, f"merchant order {mp_id} does not exist")
    stored = {payment.mp_payment_id: payment for payment in order_payments(order)}
    return render_template("admin/merchant_order.html", order=order, stored=stored)


@bp.get("/chargebacks")
def chargebacks() -> ResponseReturnValue:
    """Chargebacks, newest first; `payment_id` and `account` narrow them."""
    payment_id = request.args.get("payment_id") or None
    account = request.args.get("account") or None
    try:
        rows = find_chargebacks(payment_id=payment_id, account_id=parse_account(account))
    except FilterError as exc:
        return render_template(
            "admin/chargebacks.html", error=str(exc), chargebacks=[], payment_id=payment_id
        ), 400
    return render_template(
        "admin/chargebacks.html",
        error=None,
        chargebacks=rows,
        payment_id=payment_id,
        account=account,
    )


@bp.get("/subscriptions")
def subscriptions() -> ResponseReturnValue:
    """Subscriptions, most recently updated first; `status` and `account` narrow them."""
    args = request.args
    status = args.get("status") or None
    account = args.get("account") or None
    try:
        limit = parse_int("limit", args.get("limit"), default=50, minimum=1, maximum=100)
        page = keyset_page(
            subscriptions_query(status, account_id=parse_account(account)),
            Subscription.updated_at,
            Subscription.id,
            limit=limit,
            after=args.get("after") or None,
            before=args.get("before") or None,
        )
    except FilterError as exc:
        return render_template("admin/subscriptions.html", error=str(exc), args=args), 400
    return render_template(
        "admin/subscriptions.html",
        error=None,
        args=args,
        page=page,
        base={
            key: value
            for key, value in (("account", account), ("status", status), ("limit", limit))
            if value
        },
        page_sizes=PAGE_SIZES,
    )


@bp.get("/subscriptions/<mp_id>")
def subscription(mp_id: str) -> ResponseReturnValue:
    """One subscription: status, payer, plan, amount and frequency, GHL contact and tags, and
    its charges (authorized payments) with the payments they made."""
    found = find_in_account(find_subscription, mp_id)
    if found is None:
        abort(404, f"subscription {mp_id} does not exist")
    charges = subscription_charges(found)
    return render_template(
        "admin/subscription.html",
        subscription=found,
        charges=charges,
        payments=charge_payments(charges),
    )


@bp.app_template_global("payment_resources")
def payment_resources(mp_payment_id: str, account_id: int | None = None) -> dict[str, Any]:
    """The orders listing a payment, its chargebacks, alerts and the subscription charge that
    made it (of the payment's account), for the payment's page."""
    return {
        "orders": orders_of_payment(mp_payment_id, account_id),
        "chargebacks": find_chargebacks(payment_id=mp_payment_id, account_id=account_id),
        "alerts": find_alerts(payment_id=mp_payment_id, account_id=account_id),
        "charges": charges_of_payment(mp_payment_id, account_id),
    }


@bp.get("/alerts")
def alerts() -> ResponseReturnValue:
    """Fraud alerts and claims, newest first; `kind`, `payment_id` and `account` narrow them."""
    kind = request.args.get("kind") or None
    payment_id = request.args.get("payment_id") or None
    account = request.args.get("account") or None
    shown = {"kind": kind, "kinds": ALERT_KINDS, "payment_id": payment_id, "account": account}
    try:
        rows = find_alerts(kind=kind, payment_id=payment_id, account_id=parse_account(account))
    except FilterError as exc:
        return render_template("admin/alerts.html", alerts=[], error=str(exc), **shown), 400
    return render_template("admin/alerts.html", alerts=rows, error=None, **shown)
