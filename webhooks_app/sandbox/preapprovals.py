"""Sandbox subscriptions (MercadoPago preapprovals): their shape, creation and updates.

Shape of `GET /preapproval/{id}`: mercadopago.com developers, reference
"subscriptions/get-preapproval", and its create-subscription example (id as 32 hex
characters, payer_email, status, reason, preapproval_plan_id, external_reference,
date_created, last_modified, next_payment_date, init_point, auto_recurring).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

STATUSES = ("pending", "authorized", "paused", "cancelled")


def new_preapproval_id() -> str:
    """An id like MercadoPago's (`2c938084814f6e6e018152a8c4350001`)."""
    return uuid.uuid4().hex


def new_preapproval(preapproval_id: str, now: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A preapproval with MercadoPago's fields; `fields` override the defaults."""
    status = fields.get("status", "authorized")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    auto_recurring = {
        "frequency": 1,
        "frequency_type": "months",
        "transaction_amount": 49.9,
        "currency_id": "BRL",
        "start_date": now,
        **(fields.get("auto_recurring") or {}),
    }
    preapproval = {
        "id": preapproval_id,
        "payer_id": fields.get("payer_id", 123456789),
        "payer_email": fields.get("payer_email", "subscriber@example.com"),
        "back_url": fields.get("back_url", "https://merchant.example.com/subscriptions/return"),
        "collector_id": fields.get("collector_id", 987654321),
        "application_id": fields.get("application_id", 1234567812345678),
        "status": status,
        "reason": fields.get("reason", "Monthly plan"),
        "external_reference": fields.get("external_reference"),
        "preapproval_plan_id": fields.get("preapproval_plan_id"),
        "date_created": now,
        "last_modified": now,
        "init_point": (
            "https://www.mercadopago.com.br/subscriptions/checkout?preapproval_id=" + preapproval_id
        ),
        "next_payment_date": fields.get("next_payment_date", now),
        "auto_recurring": auto_recurring,
        "payment_method_id": fields.get("payment_method_id", "account_money"),
    }
    return preapproval


def update_preapproval(
    existing: dict[str, Any], fields: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """Apply `fields` (status, next_payment_date, auto_recurring …); bump last_modified."""
    updated = copy.deepcopy(existing)
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {fields['status']!r}")
    for name, value in fields.items():
        if name == "id":
            continue
        if name == "auto_recurring":
            updated["auto_recurring"] = {**updated["auto_recurring"], **(value or {})}
        else:
            updated[name] = value
    updated["last_modified"] = now
    existing.clear()
    existing.update(updated)
    return existing
