"""MercadoPago merchant orders and chargebacks for the sandbox: builders over plain dicts.

Shapes from MercadoPago's reference (mercadopago.com developers):
- reference/merchant_orders/_merchant_orders_id/get and reference/merchant_orders/resource
  (payer.email is deprecated and empty; payments[] are summaries with `last_modified`);
- reference/chargebacks/_chargebacks_id/get and reference/chargebacks/resource
  (note MercadoPago's spelling `coverage_elegible`).
`SandboxState` stores the dicts and holds the lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .payments import MP_TZ, format_mp_time


def payment_summary(payment: Mapping[str, Any]) -> dict[str, Any]:
    """A payment as a merchant order lists it."""
    amount = payment.get("transaction_amount")
    return {
        "id": payment["id"],
        "transaction_amount": amount,
        "total_paid_amount": (payment.get("transaction_details") or {}).get(
            "total_paid_amount", amount
        ),
        "shipping_cost": 0,
        "currency_id": payment.get("currency_id"),
        "status": payment.get("status"),
        "status_detail": payment.get("status_detail"),
        "operation_type": payment.get("operation_type"),
        "date_approved": payment.get("date_approved"),
        "date_created": payment.get("date_created"),
        "last_modified": payment.get("date_last_updated"),
        "amount_refunded": payment.get("transaction_amount_refunded", 0),
    }


def new_merchant_order(
    order_id: int, now: str, payments: list[Mapping[str, Any]], fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A complete merchant order listing `payments`, overridden by `fields`."""
    summaries = [payment_summary(payment) for payment in payments]
    paid = sum(float(s["total_paid_amount"] or 0) for s in summaries if s["status"] == "approved")
    total = float(
        fields.get("total_amount", sum(float(s["transaction_amount"] or 0) for s in summaries))
    )
    order: dict[str, Any] = {
        "id": order_id,
        "status": "closed" if summaries and paid >= total else "opened",
        "external_reference": (payments[0].get("external_reference") if payments else None)
        or f"order-{order_id}",
        "preference_id": f"123456789-{order_id:x}-sandbox",
        "payments": summaries,
        "shipments": [],
        "payouts": [],
        "collector": {"id": 123456789, "email": "", "nickname": "SANDBOXSELLER"},
        "marketplace": "NONE",
        "notification_url": None,
        "date_created": now,
        "last_updated": now,
        "sponsor_id": None,
        "shipping_cost": 0,
        "total_amount": total,
        "site_id": "MLB",
        "paid_amount": paid,
        "refunded_amount": sum(float(s["amount_refunded"] or 0) for s in summaries),
        # Deprecated: MercadoPago answers an empty e-mail (follow payments[].id for it).
        "payer": {"id": 900000000 + order_id % 100000000, "email": ""},
        "items": [
            {
                "id": "item-1",
                "category_id": "others",
                "currency_id": summaries[0]["currency_id"] if summaries else "BRL",
                "description": "Sandbox item",
                "picture_url": None,
                "title": "Sandbox item",
                "quantity": 1,
                "unit_price": total,
            }
        ],
        "cancelled": False,
        "additional_info": "",
        "application_id": None,
        "is_test": True,
        "order_status": "paid" if summaries and paid >= total else "payment_required",
        "client_id": "123456789",
    }
    order.update({k: v for k, v in fields.items() if k not in ("id", "payment_ids")})
    return order


def new_chargeback(
    chargeback_id: str, now: datetime, payment: Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A complete chargeback against `payment`, overridden by `fields`."""
    stamp = format_mp_time(now)
    chargeback: dict[str, Any] = {
        "id": chargeback_id,
        "payments": [payment["id"]] if payment else [],
        "currency": payment.get("currency_id") if payment else "BRL",
        "amount": payment.get("transaction_amount") if payment else 100.0,
        "reason": "fraud",
        "coverage_applied": None,
        "coverage_elegible": True,
        "documentation_required": True,
        "documentation_status": "pending",
        "documentation": [],
        "date_documentation_deadline": format_mp_time((now + timedelta(days=10)).astimezone(MP_TZ)),
        "date_created": stamp,
        "date_last_updated": stamp,
        "live_mode": False,
    }
    chargeback.update({k: v for k, v in fields.items() if k not in ("id", "payment_id")})
    return chargeback
