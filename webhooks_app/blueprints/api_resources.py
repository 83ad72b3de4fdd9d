"""The API's merchant orders, chargebacks, fraud alerts and claims, and subscriptions with
their charges (on the `api` blueprint: same token check). Every view is `account_scoped`:
another account's row answers 404 as a missing one."""

from __future__ import annotations

from flask import abort, jsonify, request
from flask.typing import ResponseReturnValue

from ..models import Subscription
from ..resource_lookups import (
    find_alerts,
    find_chargebacks,
    find_merchant_order,
    find_subscription,
    order_payments,
    subscription_charges,
    subscriptions_query,
)
from .api import account_scoped, api_account_id, bp, request_limit, updated_first_page


@bp.get("/merchant-orders/<mp_id>")
@account_scoped
def get_merchant_order(mp_id: str) -> ResponseReturnValue:
    """One merchant order by MercadoPago id, with the stored payments it lists."""
    order = find_merchant_order(mp_id, api_account_id())
    if order is None:
        abort(404, f"merchant order {mp_id} does not exist")
    data = order.to_dict()
    data["payments"] = [payment.to_dict() for payment in order_payments(order)]
    return jsonify(data)


@bp.get("/chargebacks")
@account_scoped
def list_chargebacks() -> ResponseReturnValue:
    """Chargebacks, newest first; filters `payment_id`, `documentation_status`."""
    args = request.args
    limit = request_limit()
    chargebacks = find_chargebacks(
        payment_id=args.get("payment_id") or None,
        documentation_status=args.get("documentation_status") or None,
        limit=limit,
        account_id=api_account_id(),
    )
    return jsonify({"chargebacks": [chargeback.to_dict() for chargeback in chargebacks]})


@bp.get("/subscriptions")
@account_scoped
def list_subscriptions() -> ResponseReturnValue:
    """Subscriptions, most recently updated first; filter `status`; a cursor to the next page."""
    query = subscriptions_query(request.args.get("status") or None, api_account_id())
    return updated_first_page("subscriptions", query, Subscription)


@bp.get("/subscriptions/<mp_id>")
@account_scoped
def get_subscription(mp_id: str) -> ResponseReturnValue:
    """One subscription by its MercadoPago (preapproval) id, with its charges."""
    subscription = find_subscription(mp_id, api_account_id())
    if subscription is None:
        abort(404, f"subscription {mp_id} does not exist")
    data = subscription.to_dict()
    data["authorized_payments"] = [c.to_dict() for c in subscription_charges(subscription)]
    return jsonify(data)


@bp.get("/alerts")
@account_scoped
def list_alerts() -> ResponseReturnValue:
    """Fraud alerts and claims, newest first; filters `kind`, `payment_id`."""
    args = request.args
    limit = request_limit()
    alerts = find_alerts(
        kind=args.get("kind") or None,
        payment_id=args.get("payment_id") or None,
        limit=limit,
        account_id=api_account_id(),
    )
    return jsonify({"alerts": [alert.to_dict() for alert in alerts]})
