"""Sandbox authorized payments: a subscription's recurring charges, their shape and updates.

Shape of `GET /authorized_payments/{id}`: mercadopago/sdk-nodejs
`src/clients/invoice/commonTypes.ts` `InvoiceResponse` (id, type, date_created,
last_modified, preapproval_id, reason, external_reference, currency_id, transaction_amount,
debit_date, retry_attempt, status, summarized, payer_id, payment {id, status,
status_detail}) and mercadopago/sdk-java `resources/authorizedpayment/AuthorizedPayment.java`
(a numeric `id`; next_retry_date, payment_method_id). `SandboxState` stores the dicts, makes
the payment a charge made, and holds the lock.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

STATUSES = ("scheduled", "processed", "recycling", "cancelled")
# What the control route may change on a charge (the rest follows its preapproval).
UPDATABLE = ("status", "retry_attempt", "debit_date", "next_retry_date", "summarized")


def _check_status(status: Any) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def payment_summary(payment: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The payment as a charge shows it: `{id, status, status_detail}`; None before one."""
    if payment is None:
        return None
    return {k: payment.get(k) for k in ("id", "status", "status_detail")}


def _summarized(payment: Mapping[str, Any] | None) -> str:
    # Not documented value by value; the sandbox says whether the charge was collected.
    return "charged" if payment and payment.get("status") == "approved" else "pending"


def new_authorized_payment(
    charge_id: int,
    now: str,
    preapproval: Mapping[str, Any],
    payment: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """A charge of `preapproval` that made `payment` (None: not attempted yet)."""
    status = fields.get("status", "processed")
    _check_status(status)
    recurring = preapproval.get("auto_recurring") or {}
    charge = {
        "id": charge_id,
        "type": "scheduled",
        "date_created": now,
        "last_modified": now,
        "preapproval_id": preapproval["id"],
        "reason": preapproval.get("reason"),
        "external_reference": preapproval.get("external_reference"),
        "currency_id": recurring.get("currency_id"),
        "transaction_amount": recurring.get("transaction_amount"),
        "debit_date": now,
        "next_retry_date": None,
        "retry_attempt": 0,
        "status": status,
        "summarized": _summarized(payment),
        "payer_id": preapproval.get("payer_id"),
        "payment_method_id": preapproval.get("payment_method_id"),
        "payment": payment_summary(payment),
    }
    charge.update({k: v for k, v in fields.items() if k in UPDATABLE})
    return charge


def update_authorized_payment(
    existing: dict[str, Any],
    payment: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """Apply `fields` (status, retry_attempt …) and the payment's current state in place;
    bump `last_modified`, unless `fields` set it (an older one: a lagging read)."""
    if "status" in fields:
        _check_status(fields["status"])
    updated = copy.deepcopy(existing)
    updated.update({k: v for k, v in fields.items() if k in UPDATABLE})
    if payment is not None:
        updated["payment"] = payment_summary(payment)
        if "summarized" not in fields:
            updated["summarized"] = _summarized(payment)
    updated["last_modified"] = fields.get("last_modified") or now
    existing.clear()
    existing.update(updated)
    return existing
