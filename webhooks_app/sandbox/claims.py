"""Sandbox claims: the shape of `GET /post-purchase/v1/claims/{claim_id}`.

Source: mercadopago.com developers, reference "claims/get-claim-details" (id, resource,
resource_id, status, type, stage, reason_id, players, date_created, last_updated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def new_claim(claim_id: int, now: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A claim on a payment; `fields` override the defaults (`resource_id` is required)."""
    if fields.get("resource_id") is None:
        raise KeyError("resource_id (the payment the claim is about) is required")
    return {
        "id": claim_id,
        "resource": fields.get("resource", "payment"),
        "resource_id": int(fields["resource_id"]),
        "status": fields.get("status", "opened"),
        "type": fields.get("type", "mediations"),
        "stage": fields.get("stage", "claim"),
        "parent_id": None,
        "reason_id": fields.get("reason_id", "PDD9939"),
        "fulfilled": True,
        "quantity_type": "total",
        "players": [
            {"role": "complainant", "type": "buyer", "user_id": 40014151, "available_actions": []},
            {"role": "respondent", "type": "seller", "user_id": 987654321, "available_actions": []},
        ],
        "resolution": None,
        "site_id": fields.get("site_id", "MLB"),
        "date_created": now,
        "last_updated": now,
    }
