"""`/api`: read-only JSON views of events and payments, behind a bearer token."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from ..extensions import db
from ..models import EventStatus, Payment, WebhookEvent

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class BadRequest(ValueError):
    """A query parameter has a value we cannot use."""


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    """Every API call needs `Authorization: Bearer <API_TOKEN>`; the API is never open."""
    expected = current_app.config.get("API_TOKEN")
    if not expected:
        return jsonify(
            {"error": "the API is disabled: set the API_TOKEN environment variable to enable it"}
        ), 503
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Constant-time compare: response timing must not reveal the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        response = jsonify({"error": "missing or invalid API token"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response, 401
    return None


@bp.errorhandler(BadRequest)
def bad_request(exc: BadRequest) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 400


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, got {raw!r}") from None
    if limit < 1:
        raise BadRequest("limit must be at least 1")
    return min(limit, MAX_LIMIT)


@bp.get("/webhook-events")
def list_events() -> ResponseReturnValue:
    """Events, newest first; filters `status`, `type`, `limit`."""
    query = select(WebhookEvent)
    status = request.args.get("status")
    if status:
        if status not in EventStatus.ALL:
            raise BadRequest(f"status must be one of {', '.join(EventStatus.ALL)}")
        query = query.where(WebhookEvent.status == status)
    event_type = request.args.get("type")
    if event_type:
        query = query.where(WebhookEvent.type == event_type)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    events = db.session.scalars(
        query.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc()).limit(_limit())
    )
    return jsonify({"events": [event.to_dict() for event in events], "total": total})


@bp.get("/payments")
def list_payments() -> ResponseReturnValue:
    """Payments, most recently updated first; `limit`."""
    payments = db.session.scalars(
        select(Payment).order_by(Payment.updated_at.desc(), Payment.id.desc()).limit(_limit())
    )
    return jsonify({"payments": [payment.to_dict() for payment in payments]})
