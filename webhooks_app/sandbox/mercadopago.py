"""Imitation of the MercadoPago payments API (https://api.mercadopago.com)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from .faults import MERCADOPAGO
from .gate import admit, get_state, json_response, mark_api_call

logger = logging.getLogger(__name__)

bp = Blueprint("sandbox_mercadopago", __name__)

# Fault key for the search route, which concerns no single payment.
SEARCH_KEY = "search"

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def mp_error(status: int, message: str | None = None, cause: list | None = None) -> dict:
    """MercadoPago's error body: {"message", "error", "status", "cause"}."""
    code = _ERROR_CODES.get(status) or HTTP_STATUS_CODES.get(status, "error").lower().replace(
        " ", "_"
    )
    return {
        "message": message or code,
        "error": code,
        "status": status,
        "cause": cause or [],
    }


def _check_token() -> Response | None:
    """401 unless a bearer token (the configured one, if any) is present."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = get_state().access_token
    if scheme.lower() != "bearer" or not token.strip() or (expected and token.strip() != expected):
        return json_response(mp_error(401, "invalid access token"), 401)
    return None


@bp.get("/v1/payments/search")
def search_payments() -> Response:
    """Search payments with MercadoPago's sort/criteria/range/offset/limit parameters."""
    mark_api_call(MERCADOPAGO, SEARCH_KEY)
    refusal = _check_token() or admit(MERCADOPAGO, SEARCH_KEY, mp_error)
    if refusal is not None:
        return refusal
    try:
        result = get_state().search_payments(request.args.to_dict())
    except ValueError as exc:
        return json_response(mp_error(400, str(exc)), 400)
    return json_response(result, 200)


@bp.get("/v1/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    """One payment by id."""
    mark_api_call(MERCADOPAGO, payment_id)
    refusal = _check_token() or admit(MERCADOPAGO, payment_id, mp_error)
    if refusal is not None:
        return refusal
    payment = get_state().get_payment(payment_id)
    if payment is None:
        cause = [{"code": 2000, "description": "Payment not found", "data": None}]
        return json_response(mp_error(404, "Payment not found", cause), 404)
    return json_response(payment, 200)


@bp.get("/merchant_orders/<order_id>")
def get_merchant_order(order_id: str) -> Response:
    """One merchant order by id (reference/merchant_orders/_merchant_orders_id/get)."""
    mark_api_call(MERCADOPAGO, order_id)
    refusal = _check_token() or admit(MERCADOPAGO, order_id, mp_error)
    if refusal is not None:
        return refusal
    order = get_state().get_merchant_order(order_id)
    if order is None:
        # MercadoPago's error body, as for payments: {"message", "error", "status", "cause"}.
        return json_response(mp_error(404, "Merchant Order not found"), 404)
    return json_response(order, 200)


@bp.get("/v1/chargebacks/<chargeback_id>")
def get_chargeback(chargeback_id: str) -> Response:
    """One chargeback by id (reference/chargebacks/_chargebacks_id/get)."""
    mark_api_call(MERCADOPAGO, chargeback_id)
    refusal = _check_token() or admit(MERCADOPAGO, chargeback_id, mp_error)
    if refusal is not None:
        return refusal
    chargeback = get_state().get_chargeback(chargeback_id)
    if chargeback is None:
        return json_response(mp_error(404, "chargeback not found"), 404)
    return json_response(chargeback, 200)
@bp.get("/preapproval/<preapproval_id>")
def get_preapproval(preapproval_id: str) -> Response:
    """One subscription by id (`GET /preapproval/{id}`), faulted like payments (by id)."""
    mark_api_call(MERCADOPAGO, preapproval_id)
    refusal = _check_token() or admit(MERCADOPAGO, preapproval_id, mp_error)
    if refusal is not None:
        return refusal
    preapproval = get_state().get_preapproval(preapproval_id)
    if preapproval is None:
        return json_response(mp_error(404, f"preapproval {preapproval_id} not found"), 404)
    return json_response(preapproval, 200)


@bp.get("/post-purchase/v1/claims/<claim_id>")
def get_claim(claim_id: str) -> Response:
    """One claim by id (`GET /post-purchase/v1/claims/{claim_id}`), faulted by id."""
    mark_api_call(MERCADOPAGO, claim_id)
    refusal = _check_token() or admit(MERCADOPAGO, claim_id, mp_error)
    if refusal is not None:
        return refusal
    claim = get_state().get_claim(claim_id)
    if claim is None:
        return json_response(mp_error(404, f"claim {claim_id} not found"), 404)
    return json_response(claim, 200)
