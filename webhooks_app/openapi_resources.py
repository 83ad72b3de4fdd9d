"""The OpenAPI paths and schemas of `/api/merchant-orders`, `/api/chargebacks`,
`/api/alerts` and `/api/subscriptions` (with their charges, MercadoPago's authorized
payments)."""

from __future__ import annotations

from typing import Any

from .openapi import (
    CURSOR,
    DATETIME,
    INTEGER,
    LIMIT,
    STRING,
    _nullable,
    _ok,
    _param,
    _ref,
    _responses,
)

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

SUBSCRIPTION = {
    "type": "object",
    "required": ["id", "mp_preapproval_id", "tags_applied", "created_at", "updated_at"],
    "properties": {
        "id": INTEGER,
        "mp_preapproval_id": STRING,
        "status": _nullable({**STRING, "description": "pending, authorized, paused or cancelled"}),
        "payer_email": _nullable(STRING),
        "preapproval_plan_id": _nullable(STRING),
        "reason": _nullable(STRING),
        "external_reference": _nullable(STRING),
        "amount": _nullable({**STRING, "description": "decimal, e.g. 49.90"}),
        "currency": _nullable(STRING),
        "frequency": _nullable(INTEGER),
        "frequency_type": _nullable(STRING),
        "next_payment_date": _nullable(DATETIME),
        "ghl_contact_id": _nullable(STRING),
        "tags_applied": {"type": "array", "items": STRING},
        "created_at": DATETIME,
        "updated_at": DATETIME,
    },
}

AUTHORIZED_PAYMENT = {
    "type": "object",
    "description": "one recurring charge of the subscription (GET /authorized_payments/{id})",
    "required": ["mp_authorized_payment_id", "created_at", "updated_at"],
    "properties": {
        "mp_authorized_payment_id": STRING,
        "mp_preapproval_id": _nullable(STRING),
        "mp_payment_id": _nullable({**STRING, "description": "the payment the charge made"}),
        "status": _nullable(
            {**STRING, "description": "scheduled, processed, recycling or cancelled"}
        ),
        "payment_status": _nullable({**STRING, "description": "its payment's, e.g. approved"}),
        "payment_status_detail": _nullable(STRING),
        "amount": MONEY,
        "currency": _nullable(STRING),
        "debit_date": _nullable(DATETIME),
        "retry_attempt": _nullable(INTEGER),
        "reason": _nullable(STRING),
        "external_reference": _nullable(STRING),
        "mp_last_modified": _nullable(DATETIME),
        "created_at": DATETIME,
        "updated_at": DATETIME,
    },
}

SUBSCRIPTION_DETAIL = {
    "allOf": [
        _ref("Subscription"),
        {
            "type": "object",
            "required": ["authorized_payments"],
            "properties": {
                "authorized_payments": {
                    "type": "array",
                    "items": _ref("AuthorizedPayment"),
                    "description": "its charges, latest debit first",
                }
            },
        },
    ]
}

SUBSCRIPTION_PAGE = {
    "type": "object",
    "required": ["subscriptions", "next_cursor"],
    "properties": {
        "subscriptions": {"type": "array", "items": _ref("Subscription")},
        "next_cursor": _nullable(STRING),
    },
}

ALERT_KIND = {"type": "string", "enum": ["fraud_alert", "claim"]}
ALERT = {
    "type": "object",
    "required": ["kind", "mp_resource_id", "created_at", "updated_at"],
    "properties": {
        "kind": ALERT_KIND,
        "mp_resource_id": {
            **STRING,
            "description": "a fraud alert's payment id; a claim's claim id",
        },
        "mp_payment_id": _nullable(STRING),
        "merchant_order_id": _nullable(
            {**STRING, "description": "a fraud alert's data.merchant_order"}
        ),
        "status": _nullable({**STRING, "description": "stop_delivery; a claim's opened/closed"}),
        "detail": _nullable(
            {**STRING, "description": "a fraud alert's description; a claim's type/stage"}
        ),
        "payer_email": _nullable(STRING),
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
        "/api/alerts": {
            "get": {
                "operationId": "listAlerts",
                "summary": "Fraud alerts and claims, newest first",
                "parameters": [
                    _param("kind", "fraud_alert or claim", ALERT_KIND),
                    _param(
                        "payment_id",
                        "the MercadoPago payment id",
                        {"type": "string", "maxLength": 64},
                    ),
                    LIMIT,
                ],
                "responses": _responses(
                    _ok(
                        "alerts",
                        {
                            "type": "object",
                            "required": ["alerts"],
                            "properties": {"alerts": {"type": "array", "items": _ref("Alert")}},
                        },
                    ),
                    400,
                ),
            }
        },
        "/api/subscriptions": {
            "get": {
                "operationId": "listSubscriptions",
                "summary": "Subscriptions (MercadoPago preapprovals), most recently updated first",
                "parameters": [
                    _param(
                        "status",
                        "subscription status, e.g. authorized",
                        {"type": "string", "pattern": "^[a-z_]{1,32}$"},
                    ),
                    LIMIT,
                    CURSOR,
                ],
                "responses": _responses(_ok("a page of subscriptions", SUBSCRIPTION_PAGE), 400),
            }
        },
        "/api/subscriptions/{mp_id}": {
            "get": {
                "operationId": "getSubscription",
                "summary": "One subscription by its MercadoPago (preapproval) id, with its charges",
                "parameters": [{"name": "mp_id", "in": "path", "required": True, "schema": STRING}],
                "responses": _responses(
                    _ok("the subscription", _ref("SubscriptionDetail")), 404
                ),
            }
        },
    }


SCHEMAS = {
    "MerchantOrder": MERCHANT_ORDER,
    "Chargeback": CHARGEBACK,
    "Subscription": SUBSCRIPTION,
    "AuthorizedPayment": AUTHORIZED_PAYMENT,
    "SubscriptionDetail": SUBSCRIPTION_DETAIL,
    "Alert": ALERT,
}
