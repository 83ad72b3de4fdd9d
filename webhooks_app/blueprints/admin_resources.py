"""Admin pages of merchant orders, chargebacks, fraud alerts and claims (on the `admin`
blueprint: same login)."""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from ..filters import FilterError
from ..resource_lookups import (
    ALERT_KINDS,
    find_alerts,
    find_chargebacks,
    find_merchant_order,
    order_payments,
    orders_of_payment,
)
from .admin import bp


@bp.get("/merchant-orders/<mp_id>")
def merchant_order(mp_id: str) -> ResponseReturnValue:
    """One merchant order, with the payments it lists."""
    order = find_merchant_order(mp_id)
    if order is None:
        abort(404, f"merchant order {mp_id} does not exist")
    stored = {payment.mp_payment_id: payment for payment in order_payments(order)}
    return render_template("admin/merchant_order.html", order=order, stored=stored)


@bp.get("/chargebacks")
def chargebacks() -> ResponseReturnValue:
    """Chargebacks, newest first; `payment_id` narrows to one payment's."""
    payment_id = request.args.get("payment_id") or None
    return render_template(
        "admin/chargebacks.html",
        chargebacks=find_chargebacks(payment_id=payment_id),
        payment_id=payment_id,
    )


@bp.app_template_global("payment_resources")
def payment_resources(mp_payment_id: str) -> dict[str, Any]:
    """The orders listing a payment, its chargebacks and alerts, for the payment's page."""
    return {
        "orders": orders_of_payment(mp_payment_id),
        "chargebacks": find_chargebacks(payment_id=mp_payment_id),
        "alerts": find_alerts(payment_id=mp_payment_id),
    }


@bp.get("/alerts")
def alerts() -> ResponseReturnValue:
    """Fraud alerts and claims, newest first; `kind` and `payment_id` narrow them."""
    kind = request.args.get("kind") or None
    payment_id = request.args.get("payment_id") or None
    try:
        rows = find_alerts(kind=kind, payment_id=payment_id)
    except FilterError as exc:
        abort(400, str(exc))
    return render_template(
        "admin/alerts.html", alerts=rows, kind=kind, kinds=ALERT_KINDS, payment_id=payment_id
    )
