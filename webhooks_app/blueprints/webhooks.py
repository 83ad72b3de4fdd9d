"""`POST /webhooks/mp[/<account slug>]`: verify, store, enqueue, answer — in that order.

The bare path is the default account's (accounts.py); every other account has its slug's.
"""

from __future__ import annotations

import dataclasses
import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import accounts
from ..handlers import log_fields
from ..ingest import NotStoredError, store_event
from ..logging_setup import event_context
from ..metrics import (
    WEBHOOKS_RECEIVED,
    WEBHOOKS_REJECTED,
    WEBHOOKS_SIGNATURE_VERIFIED,
    type_label,
)
from ..notifications import IdSource, InvalidNotification, Notification, parse_notification
from ..signatures import SignatureError, verify_signature

logger = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def reject(
    message: str, status: int, reason: str, event_type: str = "other"
) -> ResponseReturnValue:
    """Answer a refused notification with a JSON error, and count it."""
    WEBHOOKS_RECEIVED.labels(type_label(event_type), "rejected").inc()
    WEBHOOKS_REJECTED.labels(reason).inc()
    return jsonify({"error": message}), status


def read_body() -> bytes:
    """The request body; RequestEntityTooLarge if it is over MAX_CONTENT_LENGTH.

    werkzeug refuses a Content-Length over the limit, but a chunked body (no
    Content-Length) is only cut at the limit and handed over as if complete: one
    more byte left in the server's stream means the sender sent more than that.
    """
    body = request.get_data()
    limit = request.max_content_length
    if limit is not None and len(body) >= limit and request.content_length is None:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return body


def check_signed_parts(notification: Notification) -> None:
    """Raise SignatureError unless what the signature covers is what identifies the event."""
    if notification.id_source == IdSource.BODY:
        # The signature covers the query's data.id only: a body's id would be unsigned.
        raise SignatureError("a signed notification must carry ?data.id=… in its URL")
    if notification.signed_data_id is None and "x-request-id" not in notification.headers:
        # Without data.id the signed x-request-id is the event's key (notifications.py).
        raise SignatureError("a notification without ?data.id=… must carry x-request-id")


@bp.post("/mp")
def receive_mercadopago() -> ResponseReturnValue:
    """Receive one MercadoPago notification (Webhooks or IPN form) for the default account."""
    try:
        account = accounts.default_account()
    except accounts.UNREADABLE:
        return _database_unavailable("the default account")
    return receive_for(account)


@bp.post("/mp/<slug>")
def receive_for_account(slug: str) -> ResponseReturnValue:
    """Receive one MercadoPago notification for the account with this slug; an unknown or
    disabled account is 404 and nothing is stored."""
    try:
        account = accounts.by_slug(slug)
    except accounts.UNREADABLE:
        return _database_unavailable(f"account {slug!r}")
    if account is None:
        return _no_such_account()
    return receive_for(account)


def _database_unavailable(what: str) -> ResponseReturnValue:
    # The database is down, or the account's secrets cannot be decrypted (a key missing
    # from ACCOUNT_SECRET_KEYS): a deployment's fault, not the sender's.
    logger.exception("could not read %s", what)
    # 5xx: MercadoPago keeps the notification and delivers it again later.
    return reject("temporarily unable to store the notification", 503, "database_unavailable")


def _no_such_account() -> ResponseReturnValue:
    """404, the same for an unknown and a disabled account (a URL tells nothing of which)."""
    WEBHOOKS_RECEIVED.labels("other", "rejected").inc()
    WEBHOOKS_REJECTED.labels("unknown_account").inc()
    return jsonify({"error": "no such account"}), 404


def receive_for(account: accounts.AccountSettings) -> ResponseReturnValue:
    """Verify the notification with the account's secret, store it as the account's, answer."""
    if not account.enabled:
        return _no_such_account()
    try:
        body = read_body()
    except RequestEntityTooLarge:
        WEBHOOKS_RECEIVED.labels("other", "rejected").inc()
        WEBHOOKS_REJECTED.labels("too_large").inc()
        raise
    try:
        notification = parse_notification(body, request.content_type, request.args, request.headers)
    except InvalidNotification as exc:
        logger.info("notification rejected (%s): %s", exc.status_code, exc.message)
        return reject(exc.message, exc.status_code, "invalid")

    notification = dataclasses.replace(notification, account_id=account.id)
    config = account.config
    if notification.source == "ipn":
        if not config["MP_ACCEPT_IPN"]:
            return reject(
                "IPN notifications are refused here (MP_ACCEPT_IPN is off)",
                403,
                "ipn_refused",
                notification.type,
            )
    elif (
        config["MP_VERIFY_SIGNATURES"]
        and not config["MP_WEBHOOK_SECRET"]
        and account.id != accounts.DEFAULT_ACCOUNT_ID
    ):
        # Created, but its secret not pasted back yet (README, "three steps"): nothing can
        # vouch for the notification; MercadoPago delivers it again after a 401.
        return reject(
            "this account has no webhook secret yet", 401, "signature", notification.type
        )
    elif config["MP_VERIFY_SIGNATURES"] and config["MP_WEBHOOK_SECRET"]:
        try:
            check_signed_parts(notification)
            # No ?data.id (a fraud alert, a topic we ignore): verified with the id left out,
            # as MercadoPago's template says of any missing part.
            secret_index = verify_signature(
                config["MP_WEBHOOK_SECRET"],
                request.headers.get("x-signature"),
                request.headers.get("x-request-id"),
                notification.signed_data_id,
                tolerance=config["MP_SIGNATURE_TOLERANCE"],
            )
        except SignatureError as exc:
            logger.warning("notification %s rejected: %s", notification.webhook_id, exc)
            return reject(f"invalid signature: {exc}", 401, "signature", notification.type)
        WEBHOOKS_SIGNATURE_VERIFIED.labels(str(secret_index)).inc()

    try:
        stored = store_event(notification)
    except (SQLAlchemyError, NotStoredError):
        logger.exception("could not store notification %s", notification.webhook_id)
        # 5xx: MercadoPago keeps the notification and delivers it again later.
        return reject(
            "temporarily unable to store the notification",
            503,
            "database_unavailable",
            notification.type,
        )

    with event_context(
        account=account.id,
        event_id=stored.id,
        webhook_id=notification.webhook_id,
        **log_fields(notification),
    ):
        if not stored.created:
            WEBHOOKS_RECEIVED.labels(type_label(notification.type), "duplicate").inc()
            logger.info("event %s: duplicate delivery of %s", stored.id, notification.webhook_id)
            return jsonify({"status": "duplicate", "event_id": stored.id}), 200
        WEBHOOKS_RECEIVED.labels(type_label(notification.type), "accepted").inc()
        logger.info(
            "event %s received: %s %s %s%s",
            stored.id,
            notification.source,
            notification.type,
            notification.resource_id,
            "" if stored.queued else "; not queued, stays pending",
        )
    return jsonify({"status": "accepted", "event_id": stored.id}), 200
