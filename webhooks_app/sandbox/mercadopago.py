"""Imitation of the MercadoPago API (https://api.mercadopago.com): the resources we read."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from . import tenants
from .faults import MERCADOPAGO
from .gate import admit, bearer_token, get_state, json_response, mark_api_call

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
    """401 unless a bearer token is present (one of those the sandbox knows, if any)."""
    token = bearer_token()
    if token is None or not get_state().mp_token_accepted(token):
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
        # Only the caller's payments (and those of nobody), as MercadoPago lists a seller's.
        result = get_state().search_payments(request.args.to_dict(), bearer_token())
    except ValueError as exc:
        return json_response(mp_error(400, str(exc)), 400)
    return json_response(result, 200)


def _serve_resource(
    resource_id: str, lookup: Callable[[str], dict | None], not_found: dict, kind: str
) -> Response:
    """A MercadoPago resource by id: the token and the faults keyed by its id first, then
    the resource, or MercadoPago's error body `{message, error, status, cause}` as a 404.

    Another seller's resource is that same 404 (tenants.py says why)."""
    mark_api_call(MERCADOPAGO, resource_id)
    refusal = _check_token() or admit(MERCADOPAGO, resource_id, mp_error)
    if refusal is not None:
        return refusal
    resource = lookup(resource_id)
    token = bearer_token() or ""
    if resource is None or not get_state().readable(kind, resource_id, token):
        return json_response(not_found, 404)
    return json_response(resource, 200)


@bp.get("/v1/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    """One payment by id."""
    cause = [{"code": 2000, "description": "Payment not found", "data": None}]
    return _serve_resource(
        payment_id,
        get_state().get_payment,
        mp_error(404, "Payment not found", cause),
        tenants.PAYMENT,
    )


@bp.get("/merchant_orders/<order_id>")
def get_merchant_order(order_id: str) -> Response:
    """One merchant order by id (reference/merchant_orders/_merchant_orders_id/get)."""
    return _serve_resource(
        order_id,
        get_state().get_merchant_order,
        mp_error(404, "Merchant Order not found"),
        tenants.MERCHANT_ORDER,
    )


@bp.get("/v1/chargebacks/<chargeback_id>")
def get_chargeback(chargeback_id: str) -> Response:
    """One chargeback by id (reference/chargebacks/_chargebacks_id/get)."""
    return _serve_resource(
        chargeback_id,
        get_state().get_chargeback,
        mp_error(404, "chargeback not found"),
        tenants.CHARGEBACK,
    )


@bp.get("/preapproval/<preapproval_id>")
def get_preapproval(preapproval_id: str) -> Response:
    """One subscription by id (`GET /preapproval/{id}`), faulted like payments (by id)."""
    not_found = mp_error(404, f"preapproval {preapproval_id} not found")
    return _serve_resource(
        preapproval_id, get_state().get_preapproval, not_found, tenants.PREAPPROVAL
    )


@bp.get("/authorized_payments/<charge_id>")
def get_authorized_payment(charge_id: str) -> Response:
    """One charge of a subscription by id (`GET /authorized_payments/{id}`; sdk-nodejs
    `src/clients/invoice/get/index.ts`), faulted by id."""
    not_found = mp_error(404, f"authorized payment {charge_id} not found")
    return _serve_resource(
        charge_id, get_state().get_authorized_payment, not_found, tenants.AUTHORIZED_PAYMENT
    )


@bp.get("/post-purchase/v1/claims/<claim_id>")
def get_claim(claim_id: str) -> Response:
    """One claim by id (`GET /post-purchase/v1/claims/{claim_id}`), faulted by id."""
    not_found = mp_error(404, f"claim {claim_id} not found")
    return _serve_resource(claim_id, get_state().get_claim, not_found, tenants.CLAIM)
