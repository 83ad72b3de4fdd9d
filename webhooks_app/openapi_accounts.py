"""The OpenAPI paths and schemas of `/api/accounts` (the global token's), and the `account`
narrowing of the views an account's token may call (merged in by openapi.py)."""

from __future__ import annotations

from typing import Any

from .accounts import SLUG_PATTERN
from .openapi import DATETIME, INTEGER, JSON_BODY, STRING, _nullable, _ok, _param, _ref, _responses

SLUG = {"type": "string", "pattern": f"^{SLUG_PATTERN.pattern}$", "maxLength": 64}
BOOLEAN = {"type": "boolean"}
ACCOUNT_PARAM = _param(
    "account",
    "only this account's (its slug); the global token only: an account's token always sees "
    "its own account, and naming another answers 403",
    SLUG,
)
# The operations an account's token may call, narrowed by `account` (GET ones).
SCOPED_LISTINGS = (
    "/api/webhook-events",
    "/api/payments",
    "/api/stats",
    "/api/chargebacks",
    "/api/alerts",
    "/api/subscriptions",
)

ACCOUNT = {
    "type": "object",
    "description": "an account; its secrets are never shown, only whether each is set",
    "required": ["id", "slug", "name", "enabled", "webhook_path", "created_at", "updated_at"],
    "properties": {
        "id": INTEGER,
        "slug": STRING,
        "name": STRING,
        "enabled": BOOLEAN,
        "webhook_path": {**STRING, "description": "the path to give MercadoPago"},
        "ghl_location_id": _nullable(STRING),
        "mp_access_token_set": BOOLEAN,
        "mp_webhook_secret_set": BOOLEAN,
        "ghl_api_token_set": BOOLEAN,
        "api_token_set": BOOLEAN,
        "status_tags": _nullable({**STRING, "description": "as GHL_STATUS_TAGS; null: its"}),
        "tag_mode": _nullable({**STRING, "description": "as GHL_TAG_MODE; null: its"}),
        "custom_fields": _nullable({**STRING, "description": "as GHL_CUSTOM_FIELDS; null: its"}),
        "retention_days": _nullable({"type": "number", "description": "null: RETENTION_DAYS"}),
        "created_at": DATETIME,
        "updated_at": DATETIME,
    },
}

_TEXT = _nullable({"type": "string", "maxLength": 2000})
_SECRET = _nullable({"type": "string", "maxLength": 2000, "description": "write-only"})
FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "mp_access_token": _SECRET,
    "mp_webhook_secret": _SECRET,
    "ghl_location_id": _nullable({"type": "string", "maxLength": 64}),
    "ghl_api_token": _SECRET,
    "status_tags": _TEXT,
    "tag_mode": _nullable({"type": "string", "maxLength": 16}),
    "custom_fields": _TEXT,
    "retention_days": _nullable({"type": "number", "minimum": 0}),
}
ACCOUNT_CREATE = {
    "type": "object",
    "required": [
        "slug",
        "name",
        "mp_access_token",
        "mp_webhook_secret",
        "ghl_location_id",
        "ghl_api_token",
    ],
    "properties": {"slug": SLUG, **FIELDS},
    "additionalProperties": False,
}
ACCOUNT_EDIT = {
    "type": "object",
    "description": "only the fields to change; a secret left out or empty is unchanged",
    "properties": {**FIELDS, "enabled": BOOLEAN},
    "additionalProperties": False,
}
ROTATION = {
    "type": "object",
    "properties": {
        "secret": {
            **STRING,
            "description": "the new webhook secret; the previous one stays accepted until the "
            "rotation is finished",
        },
        "finish": {
            **BOOLEAN,
            "default": False,
            "description": "alone: keep only the newest secret; with `secret`: replace at once",
        },
    },
    "additionalProperties": False,
}
ISSUED_TOKEN = {
    "type": "object",
    "required": ["token", "account"],
    "properties": {
        "token": {**STRING, "description": "shown this once: only its hash is stored"},
        "account": _ref("Account"),
    },
}
DELETED = {
    "type": "object",
    "required": ["deleted", "rows"],
    "properties": {
        "deleted": STRING,
        "rows": {
            "type": "object",
            "description": "rows deleted, by table",
            "additionalProperties": INTEGER,
        },
    },
}


def _body(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {
        "required": required,
        "description": JSON_BODY,
        "content": {"application/json": {"schema": schema}},
    }


def _created(description: str, schema: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses = _responses(_ok(description, schema), *codes)
    responses["201"] = responses.pop("200")
    return responses


def account_paths() -> dict[str, Any]:
    """The paths, to merge into the document's."""
    slug = {"name": "slug", "in": "path", "required": True, "schema": STRING}
    account = _ok("the account", _ref("Account"))
    return {
        "/api/accounts": {
            "get": {
                "operationId": "listAccounts",
                "summary": "Every account (global token only)",
                "responses": _responses(
                    _ok(
                        "the accounts",
                        {
                            "type": "object",
                            "required": ["accounts"],
                            "properties": {"accounts": {"type": "array", "items": _ref("Account")}},
                        },
                    )
                ),
            },
            "post": {
                "operationId": "createAccount",
                "summary": "A new, enabled account (global token only)",
                "requestBody": _body(ACCOUNT_CREATE, required=True),
                "responses": _created("created", _ref("Account"), 400, 415),
            },
        },
        "/api/accounts/{slug}": {
            "get": {
                "operationId": "getAccount",
                "summary": "One account (global token only)",
                "parameters": [slug],
                "responses": _responses(account, 404),
            },
            "patch": {
                "operationId": "editAccount",
                "summary": "Change an account's settings, enable or disable it",
                "parameters": [slug],
                "requestBody": _body(ACCOUNT_EDIT),
                "responses": _responses(account, 400, 404, 415),
            },
            "delete": {
                "operationId": "deleteAccount",
                "summary": "Delete an account and everything stored for it (not the default)",
                "parameters": [slug],
                "responses": _responses(_ok("what was deleted", DELETED), 400, 404, 415),
            },
        },
        "/api/accounts/{slug}/rotate-secret": {
            "post": {
                "operationId": "rotateAccountSecret",
                "summary": "Rotate the account's webhook secret, or finish a rotation",
                "parameters": [slug],
                "requestBody": _body(ROTATION),
                "responses": _responses(account, 400, 404, 415),
            }
        },
        "/api/accounts/{slug}/token": {
            "post": {
                "operationId": "issueAccountToken",
                "summary": "Issue the account's API token (it sees this account only)",
                "parameters": [slug],
                "responses": _responses(_ok("the token, once", ISSUED_TOKEN), 404, 415),
            },
            "delete": {
                "operationId": "revokeAccountToken",
                "summary": "Revoke the account's API token",
                "parameters": [slug],
                "responses": _responses(account, 404, 415),
            },
        },
    }


def add_account_scope(document: dict[str, Any]) -> None:
    """Document `account` on the listings and on the bulk retry's body."""
    for path in SCOPED_LISTINGS:
        document["paths"][path]["get"]["parameters"].append(ACCOUNT_PARAM)
    retry = document["paths"]["/api/webhook-events/retry"]["post"]
    properties = retry["requestBody"]["content"]["application/json"]["schema"]["properties"]
    properties["account"] = ACCOUNT_PARAM["schema"]


SCHEMAS = {"Account": ACCOUNT}
