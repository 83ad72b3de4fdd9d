"""The OpenAPI paths and schemas of `/api/merchant-orders` and `/api/chargebacks`."""

from __future__ import annotations

from typing import Any

from .openapi import DATETIME, LIMIT, STRING, _nullable, _ok, _param, _ref, _responses

MONEY = _nullable({**STRING, "description": "decimal, e.g. 100.00"})
BOOLEAN = {"type": "boolean"}
IDS = {"type": "array", "items": STRING}

MERCHANT_ORDER = {
    "type": "object",
    "required": ["mp_order_id", "payment_ids", "created_at", "updated_at", "payments"],
    "properties": {
        "mp_order_id": STRING,
        "status": _nullable({**STRING, "description": "opened, closed or expired"}),
        "order_status": _nullable({**STRING, "description": "e.g. paid, payment_required"}),
        "total_amount": MONEY,
        "paid_amount": MONEY,
        "currency": _nullable(STRING),
        "external_reference": _nullable(STRING),
        "preference_id": _nullable(STRING),
        "payment_ids": {**IDS, "description": "the MercadoPago ids of the payments it lists"},
        "mp_last_updated": _nullable(DATETIME),
        "created_at": DATETIME,
        "updated_at": DATETIME,
        "payments": {
            "type": "array",
            "items": _ref("Payment"),
            "description": "those of its payments we store",
        },
    },
}

CHARGEBACK = {
    "type": "object",
    "required": ["mp_chargeback_id", "payment_ids", "created_at", "updated_at"],
    "properties": {
        "mp_chargeback_id": STRING,
        "mp_payment_id": _nullable(STRING),
        "payment_ids": IDS,
        "amount": MONEY,
        "currency": _nullable(STRING),
        "coverage_applied": _nullable(BOOLEAN),
        "coverage_eligible": _nullable(BOOLEAN),
        "documentation_required": _nullable(BOOLEAN),
        "documentation_status": _nullable(STRING),
        "date_documentation_deadline": _nullable(DATETIME),
        "mp_date_created": _nullable(DATETIME),
        "mp_date_last_updated": _nullable(DATETIME),
        "ghl_contact_id": _nullable(STRING),
        "alerted_at": _nullable(DATETIME),
        "created_at": DATETIME,
        "updated_at": DATETIME,
    },
}


def resource_paths() -> dict[str, Any]:
    """The paths, to merge into the document's."""
    return {
        "/api/merchant-orders/{mp_id}": {
            "get": {
                "operationId": "getMerchantOrder",
                "summary": "One merchant order by MercadoPago id, with its stored payments",
                "parameters": [{"name": "mp_id", "in": "path", "required": True, "schema": STRING}],
                "responses": _responses(_ok("the order", _ref("MerchantOrder")), 404),
            }
        },
        "/api/chargebacks": {
            "get": {
                "operationId": "listChargebacks",
                "summary": "Chargebacks, newest first",
                "parameters": [
                    _param(
                        "payment_id",
                        "the MercadoPago payment id",
                        {"type": "string", "maxLength": 64},
                    ),
                    _param(
                        "documentation_status",
                        "e.g. pending, review_pending, valid, invalid, not_supplied",
                        {"type": "string", "maxLength": 32},
                    ),
                    LIMIT,
                ],
                "responses": _responses(
                    _ok(
                        "chargebacks",
                        {
                            "type": "object",
                            "required": ["chargebacks"],
                            "properties": {
                                "chargebacks": {"type": "array", "items": _ref("Chargeback")}
                            },
                        },
                    ),
                    400,
                ),
            }
        },
    }


SCHEMAS = {"MerchantOrder": MERCHANT_ORDER, "Chargeback": CHARGEBACK}
