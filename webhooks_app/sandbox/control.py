"""Control routes under /_sandbox: drive the state from another process.

JSON in, JSON out. These routes are never faulted, rate-limited or logged as API calls.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, request

from .faults import GHL_DAILY_REQUESTS
from .gate import get_state, json_response

logger = logging.getLogger(__name__)

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


@bp.errorhandler(ValueError)
@bp.errorhandler(TypeError)
@bp.errorhandler(KeyError)
def _bad_request(exc: Exception) -> Response:
    """Bad control input (missing field, wrong type) answers 400 with the reason."""
    return json_response({"error": str(exc)}, 400)


@bp.get("/health")
def health() -> Response:
    """Liveness probe, for whoever waits for the server to come up."""
    return json_response({"ok": True}, 200)


@bp.post("/payments")
def add_payment() -> Response:
    """Create or update a payment (a JSON object), or several (a JSON list)."""
    body = request.get_json(silent=True)
    if isinstance(body, list):
        return json_response([get_state().add_payment(**item) for item in body], 200)
    return json_response(get_state().add_payment(**_body()), 200)


@bp.get("/payments")
def list_payments() -> Response:
    """Every payment."""
    return json_response(get_state().payments(), 200)


@bp.post("/merchant-orders")
def add_merchant_order() -> Response:
    """Create a merchant order: {"payment_ids"?: [...], "id"?, any order field}."""
    return json_response(get_state().add_merchant_order(**_body()), 200)


@bp.post("/chargebacks")
def add_chargeback() -> Response:
    """Create or update a chargeback: {"payment_id"?, "id"?, any chargeback field}."""
    return json_response(get_state().add_chargeback(**_body()), 200)


@bp.post("/preapprovals")
def add_preapproval() -> Response:
    """Create or update a subscription (preapproval): a JSON object, `id` to update."""
    return json_response(get_state().add_preapproval(**_body()), 200)


@bp.post("/authorized-payments")
def add_authorized_payment() -> Response:
    """Create a charge of a subscription: {"preapproval_id", "payment_status"?: "approved",
    "status"?: "processed", "payment_id"?}, with a new payment of its subscriber unless
    `payment_id` names one; {"id", …} updates one (and its payment's status)."""
    return json_response(get_state().add_authorized_payment(**_body()), 200)


@bp.post("/claims")
def add_claim() -> Response:
    """Create or update a claim on a payment (`resource_id`): a JSON object."""
    return json_response(get_state().add_claim(**_body()), 200)


@bp.post("/tenants")
def add_tenant() -> Response:
    """Register a tenant: {"mp_access_token"?: a seller's MercadoPago token, "ghl_token"? and
    "ghl_location_id"?: a GoHighLevel location token and its location}. Once any is
    registered, only registered tokens (and the startup ones) are accepted; a resource
    created with {"owner": <mp_access_token>} is that seller's alone (tenants.py).
    Forgotten by /_sandbox/reset. Answers every registered tenant."""
    body = _body()
    state = get_state()
    if not any(body.get(name) for name in ("mp_access_token", "ghl_token", "ghl_location_id")):
        raise ValueError("give mp_access_token, or ghl_token with ghl_location_id, or all three")
    if body.get("ghl_token") or body.get("ghl_location_id"):
        state.register_ghl_token(body.get("ghl_token"), body.get("ghl_location_id"))
    if body.get("mp_access_token"):
        state.register_mp_token(body["mp_access_token"])
    return json_response(state.tenants(), 200)


@bp.get("/tenants")
def tenants() -> Response:
    """The registered tokens: {"mercadopago": [...], "gohighlevel": {token: location}}."""
    return json_response(get_state().tenants(), 200)


@bp.post("/faults")
def set_fault() -> Response:
    """Body: {"api", "key", "status"?, "times"?, "delay"?, "retry_after"?}."""
    body = _body()
    get_state().set_fault(
        body["api"],
        body["key"],
        status=int(body.get("status", 500)),
        times=int(body.get("times", 1)),
        delay=float(body.get("delay", 0.0)),
        retry_after=None if body.get("retry_after") is None else float(body["retry_after"]),
    )
    return json_response(get_state().settings(), 200)


@bp.post("/random-failures")
def set_random_failures() -> Response:
    """Body: {"api", "rate", "seed", "status"?}; rate 0 disables."""
    body = _body()
    get_state().set_random_failures(
        body["api"],
        float(body["rate"]),
        int(body.get("seed", 0)),
        int(body.get("status", 500)),
    )
    return json_response(get_state().settings(), 200)


@bp.post("/rate-limit")
def set_rate_limit() -> Response:
    """Body: {"requests", "per_seconds", "daily"?}; {"requests": null} disables, {} sets GHL's
    100/10 s and 200,000 a day."""
    body = _body()
    get_state().set_rate_limit(
        body.get("requests", 100),
        float(body.get("per_seconds", 10.0)),
        int(body.get("daily", GHL_DAILY_REQUESTS)),
    )
    return json_response(get_state().settings(), 200)


@bp.post("/latency")
def set_latency() -> Response:
    """Body: {"api", "min_seconds", "max_seconds"}; 0, 0 disables."""
    body = _body()
    get_state().set_latency(
        body["api"],
        float(body.get("min_seconds", 0.0)),
        float(body.get("max_seconds", 0.0)),
    )
    return json_response(get_state().settings(), 200)


@bp.get("/settings")
def settings() -> Response:
    """Active faults, random failures, rate limit and latency."""
    return json_response(get_state().settings(), 200)


@bp.get("/calls")
def calls() -> Response:
    """The call log as a JSON list; query filters: api, method, path_contains."""
    return json_response(
        get_state().calls(
            api=request.args.get("api") or None,
            method=request.args.get("method") or None,
            path_contains=request.args.get("path_contains") or None,
        ),
        200,
    )


@bp.delete("/calls")
def clear_calls() -> Response:
    """Empty the call log only."""
    get_state().clear_calls()
    return json_response({"ok": True}, 200)


@bp.get("/contacts")
def contacts() -> Response:
    """Every GoHighLevel contact as a JSON list."""
    return json_response(get_state().contacts(), 200)


@bp.post("/reset")
def reset() -> Response:
    """Forget everything, registered tenants too (the startup tokens stay)."""
    get_state().reset()
    return json_response({"ok": True}, 200)
