"""`POST /webhooks/mp`: verify, store, enqueue, answer — in that order."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..ingest import store_event
from ..notifications import InvalidNotification, parse_notification
from ..processing import schedule_attempt
from ..signatures import SignatureError, verify_signature

logger = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def json_error(message: str, status: int) -> ResponseReturnValue:
    return jsonify({"error": message}), status


@bp.post("/mp")
def receive_mercadopago() -> ResponseReturnValue:
    """Receive one MercadoPago notification (Webhooks or IPN form)."""
    try:
        notification = parse_notification(
            request.get_data(), request.content_type, request.args, request.headers
        )
    except InvalidNotification as exc:
        logger.info("notification rejected (%s): %s", exc.status_code, exc.message)
        return json_error(exc.message, exc.status_code)

    config = current_app.config
    if notification.source == "ipn":
        if not config["MP_ACCEPT_IPN"]:
            return json_error("IPN notifications are refused here (MP_ACCEPT_IPN is off)", 403)
    elif config["MP_VERIFY_SIGNATURES"] and config["MP_WEBHOOK_SECRET"]:
        try:
            verify_signature(
                config["MP_WEBHOOK_SECRET"],
                request.headers.get("x-signature"),
                request.headers.get("x-request-id"),
                notification.signed_data_id,
                tolerance=config["MP_SIGNATURE_TOLERANCE"],
            )
        except SignatureError as exc:
            logger.warning("notification %s rejected: %s", notification.webhook_id, exc)
            return json_error(f"invalid signature: {exc}", 401)

    try:
        event, created = store_event(notification)
    except SQLAlchemyError:
        db.session.rollback()
        logger.exception("could not store notification %s", notification.webhook_id)
        # 5xx: MercadoPago keeps the notification and delivers it again later.
        return json_error("temporarily unable to store the notification", 503)

    if not created:
        logger.info("event %s: duplicate delivery of %s", event.id, event.webhook_id)
        return jsonify({"status": "duplicate", "event_id": event.id}), 200
    queued = schedule_attempt(event)
    logger.info(
        "event %s received: %s %s %s (%s)%s",
        event.id,
        event.source,
        event.type,
        event.resource_id,
        event.webhook_id,
        "" if queued else "; not queued, stays pending",
    )
    return jsonify({"status": "accepted", "event_id": event.id}), 200
