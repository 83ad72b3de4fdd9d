"""`/api`: JSON views and retries of events and payments, behind a bearer token.

`Authorization: Bearer <API_TOKEN>` only. The admin's Basic credentials are not
accepted here: a browser caches them and would attach them to a request that any
web page makes, so that page could replay events (cross-site request forgery).
A bearer token is never sent by a browser on its own. On top of that, a request
carrying a foreign `Origin` is refused (403), and a state-changing call must say
`Content-Type: application/json` when it has a body (415 otherwise), which an HTML form cannot send
and a cross-site script cannot send without a CORS preflight we never answer.
Bodies are parsed by json_input (nesting capped). The OpenAPI document at
`/api/openapi.json` is public (it holds no data).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import selectinload

from ..auth import UNSAFE_METHODS, bearer_ok, foreign_origin
from ..extensions import db
from ..filters import (
    FilterError,
    parse_bool,
    parse_event_filter,
    parse_int,
    parse_payment_filter,
)
from ..json_input import JsonInputError, parse_json
from ..lookups import event_detail, find_event, find_payment, payment_events
from ..models import EventStatus, Payment, WebhookEvent
from ..openapi import openapi_document
from ..pagination import capped_count, keyset_page
from ..replays import BULK_RETRY_MAX, ReplayRefused, replay_event, retry_matching
from ..stats import dashboard

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_STATS_HOURS = 168
PUBLIC_ENDPOINTS = {"api.openapi"}


class BadRequest(ValueError):
    """A query parameter or body has a value we cannot use."""


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    """Every API call needs the bearer token; state changes need JSON and no foreign Origin."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = current_app.config.get("API_TOKEN")
    if not token:
        return jsonify(
            {"error": "the API is disabled: set the API_TOKEN environment variable to enable it"}
        ), 503
    # Constant-time compare: response timing must not reveal the token.
    if not bearer_ok(request, token):
        response = jsonify({"error": "missing or invalid API token (Authorization: Bearer …)"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response, 401
    if foreign_origin():
        logger.warning(
            "refused an API %s to %s from origin %s",
            request.method,
            request.path,
            request.headers.get("Origin"),
        )
        return jsonify({"error": "cross-origin requests are refused"}), 403
    if request.method in UNSAFE_METHODS and not _json_typed():
        return jsonify({"error": "send the body as JSON, with Content-Type: application/json"}), 415
    return None


@bp.errorhandler(BadRequest)
@bp.errorhandler(FilterError)
def bad_request(exc: ValueError) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 400


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document())


@bp.get("/webhook-events")
def list_events() -> ResponseReturnValue:
    """Events, newest first (or `order=asc`); filters and a cursor to the next page."""
    args = request.args
    event_filter = parse_event_filter(args)
    limit = request_limit()
    descending = _order(args.get("order"))
    query = event_filter.query().options(selectinload(WebhookEvent.payment))
    total, exact = capped_count(query)
    page = keyset_page(
        query,
        WebhookEvent.received_at,
        WebhookEvent.id,
        limit=limit,
        after=args.get("cursor") or None,
        after_param="cursor",
        descending=descending,
    )
    return jsonify(
        {
            "events": [event.to_dict() for event in page.items],
            "total": total,
            "total_exact": exact,
            "next_cursor": page.next_cursor,
        }
    )


@bp.get("/webhook-events/<int:event_id>")
def get_event(event_id: int) -> ResponseReturnValue:
    """One event with its payload, headers, every attempt and its jobs in Redis."""
    event = _event_or_404(event_id)
    return jsonify(event_detail(event))


@bp.post("/webhook-events/<int:event_id>/retry")
def retry_event(event_id: int) -> ResponseReturnValue:
    """Re-queue one event with a fresh retry budget; a `success` one only with `force`."""
    body = _json_body()
    force = parse_bool("force", body.get("force", request.args.get("force")))
    event = _event_or_404(event_id)
    try:
        queued = replay_event(event, force=force)
    except ReplayRefused as exc:
        return jsonify({"error": str(exc)}), 409
    db.session.refresh(event)
    return jsonify({"requeued": 1, "queued": queued, "event": event.to_dict()})


@bp.post("/webhook-events/retry")
def retry_events() -> ResponseReturnValue:
    """Re-queue every event matching a filter (status defaults to failed); returns the count."""
    body = _json_body()
    filters = {key: body.get(key) for key in ("status", "type", "since", "until", "q")}
    if filters["status"] is None:
        filters["status"] = EventStatus.FAILED
    event_filter = parse_event_filter(filters)
    force = parse_bool("force", body.get("force"))
    dry_run = parse_bool("dry_run", body.get("dry_run"))
    limit = parse_int(
        "limit", body.get("limit"), default=BULK_RETRY_MAX, minimum=1, maximum=BULK_RETRY_MAX
    )
    report = retry_matching(event_filter, force=force, limit=limit, dry_run=dry_run)
    return jsonify(report.to_dict())


def request_limit() -> int:
    """The request's `limit` (rows per answer): DEFAULT_LIMIT, at most MAX_LIMIT; 400 if bad."""
    return parse_int(
        "limit", request.args.get("limit"), default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT
    )


def updated_first_page(name: str, query: Any, model: Any) -> ResponseReturnValue:
    """`{name: [...], "next_cursor": C}`: one page of `query`'s rows, most recently updated
    first (keyset on `updated_at`, `id`), of the request's `limit` from its `cursor`."""
    args = request.args
    limit = request_limit()
    page = keyset_page(
        query,
        model.updated_at,
        model.id,
        limit=limit,
        after=args.get("cursor") or None,
        after_param="cursor",
    )
    return jsonify({name: [row.to_dict() for row in page.items], "next_cursor": page.next_cursor})


@bp.get("/payments")
def list_payments() -> ResponseReturnValue:
    """Payments, most recently updated first; filters `status`, `q`; a cursor to the next page."""
    return updated_first_page("payments", parse_payment_filter(request.args).query(), Payment)


@bp.get("/payments/<mp_id>")
def get_payment(mp_id: str) -> ResponseReturnValue:
    """One payment by its MercadoPago id, with the events that touched it (newest first)."""
    payment = find_payment(mp_id)
    if payment is None:
        abort(404, f"payment {mp_id} does not exist")
    data = payment.to_dict()
    data["events"] = [event.to_dict() for event in payment_events(payment)]
    return jsonify(data)


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    """Counts, success rate, throughput, latency percentiles, queue depth, oldest pending."""
    hours = parse_int(
        "hours", request.args.get("hours"), default=1, minimum=1, maximum=MAX_STATS_HOURS
    )
    return jsonify(dashboard(hours))


def _event_or_404(event_id: int) -> WebhookEvent:
    event = find_event(event_id)
    if event is None:
        abort(404, f"event {event_id} does not exist")
    return event


def _order(value: str | None) -> bool:
    """`order`: desc (newest first, the default) or asc; True for descending."""
    if value in (None, "", "desc"):
        return True
    if value == "asc":
        return False
    raise BadRequest("order: must be asc or desc")


def _json_typed() -> bool:
    """The body is declared JSON, or there is none and no other type is claimed.

    A body-less POST carries no Content-Type (`curl -X POST`); a cross-site one
    cannot carry the bearer token either, so it needs no type.
    """
    if request.mimetype == "application/json":
        return True
    return not request.mimetype and not request.get_data()


def _json_body() -> dict[str, Any]:
    """The request's JSON object, {} when there is no body; nesting capped (json_input)."""
    data = request.get_data()
    if not data:
        return {}
    try:
        body = parse_json(data)
    except JsonInputError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


# /api/processing and the other resources' routes, on this blueprint (their own modules).
from . import api_processing, api_resources  # noqa: E402, F401
