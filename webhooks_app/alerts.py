"""Alerts: dead-lettered events and a growing backlog, to Slack-compatible webhooks and e-mail.

Run by `scheduler.py` every ALERT_INTERVAL seconds, reading the database, so a
storm of failures becomes one summary per interval, not a message per event;
and since it runs apart from the workers, an alert that cannot be sent never
slows or fails processing.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import quote, urlsplit

import requests
from flask import current_app
from redis import RedisError
from sqlalchemy import func, select

from . import queueing
from .extensions import db
from .models import EventStatus, WebhookEvent
from .stats import oldest_pending
from .timeutil import isoformat, parse_iso, utcnow

logger = logging.getLogger(__name__)

DEAD_LETTER_CURSOR = "webhooks:alerts:dead-letter-cursor"
BACKLOG_SENT = "webhooks:alerts:backlog-sent"
SHOWN_EVENTS = 5
REDACTED = "***"
# Shorter path parts ("/hook") are no secret, and replacing them would shred the message.
MIN_SECRET_CHARS = 8


@dataclass
class AlertReport:
    """What one check found and sent."""

    messages: list[str] = field(default_factory=list)
    sent: int = 0
    errors: list[str] = field(default_factory=list)


def channels_configured() -> bool:
    config = current_app.config
    return bool(config.get("ALERT_WEBHOOK_URL") or config.get("ALERT_EMAIL_TO"))


def check_and_alert(now: datetime | None = None) -> AlertReport:
    """Look for new dead letters and an old backlog; send one message for each finding."""
    now = now or utcnow()
    report = AlertReport()
    if not channels_configured():
        return report
    for message in (_dead_letter_summary(now), _backlog_warning(now)):
        if message:
            report.messages.append(message)
            report.sent += send_everywhere(message, report.errors)
    return report


def send_alert(message: str) -> AlertReport:
    """Send one message now on every configured channel (a breaker opening, a fraud alert,
    a claim, a chargeback); never raises: the caller (an event's processing) goes on."""
    report = AlertReport(messages=[message])
    try:
        if channels_configured():
            report.sent = send_everywhere(message, report.errors)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad setting: still never fail the caller
        logger.warning("alert not sent: %s", redact(str(exc)))
        report.errors.append(redact(str(exc)))
    return report


def _dead_letter_summary(now: datetime) -> str | None:
    since = _read_time(DEAD_LETTER_CURSOR) or now - timedelta(
        seconds=current_app.config["ALERT_INTERVAL"]
    )
    failed = (
        select(WebhookEvent)
        .where(
            WebhookEvent.status == EventStatus.FAILED,
            WebhookEvent.processed_at > since,
            WebhookEvent.processed_at <= now,
        )
        .order_by(WebhookEvent.processed_at)
    )
    count = db.session.scalar(select(func.count()).select_from(failed.subquery()))
    _write_time(DEAD_LETTER_CURSOR, now)
    if not count:
        return None
    lines = [
        f"{count} webhook event(s) dead-lettered since {isoformat(since)}:",
        *(
            f"- event {e.id} ({e.type} {e.resource_id}, {e.attempts} attempts): "
            f"{(e.last_error or '')[:200]}"
            for e in db.session.scalars(failed.limit(SHOWN_EVENTS))
        ),
    ]
    if count > SHOWN_EVENTS:
        lines.append(f"… and {count - SHOWN_EVENTS} more.")
    lines.append("Replay with `flask webhooks replay --status failed` once the cause is fixed.")
    return "\n".join(lines)


def _backlog_warning(now: datetime) -> str | None:
    threshold = current_app.config["ALERT_PENDING_AGE"]
    age = oldest_pending(now)["age_seconds"]
    if age is None or age < threshold:
        return None
    last_sent = _read_time(BACKLOG_SENT)
    repeat = timedelta(seconds=current_app.config["ALERT_REPEAT"])
    if last_sent and now - last_sent < repeat:
        return None  # still the same backlog: said already
    _write_time(BACKLOG_SENT, now)
    return (
        f"The oldest pending webhook event is {age / 60:.0f} minutes old "
        f"(threshold {threshold / 60:.0f}). Are the worker and scheduler running, "
        "and can they reach MercadoPago and GoHighLevel?"
    )


def send_everywhere(message: str, errors: list[str]) -> int:
    """Send to every configured channel; a failure is logged and listed, never raised."""
    config = current_app.config
    sent = 0
    senders = []
    if config.get("ALERT_WEBHOOK_URL"):
        senders.append(("webhook", send_webhook))
    if config.get("ALERT_EMAIL_TO"):
        senders.append(("e-mail", send_email))
    for name, send in senders:
        try:
            send(message)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - an alert failing must never go further
            # A Slack-style webhook URL is itself the credential, and `requests` puts it
            # (or its path) in its errors: never logged or reported as it is.
            detail = redact(str(exc))
            logger.warning("alert by %s not sent: %s", name, detail)
            errors.append(f"{name}: {detail}")
    return sent


def redact(text: str) -> str:
    """`text` without ALERT_WEBHOOK_URL, its path and query (in any form) or SMTP_PASSWORD."""
    config = current_app.config
    secrets: set[str] = set()
    url = config.get("ALERT_WEBHOOK_URL")
    if url:
        parts = urlsplit(url)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        secrets |= {url, url.rstrip("/"), tail, parts.path, parts.query, parts.password or ""}
        secrets |= {quote(value, safe="") for value in (url, tail)}
        secrets |= {quote(tail)}
        # A message cut short may hold only the last segments (Slack: /services/T…/B…/<key>).
        secrets |= set(parts.path.split("/")) | set(parts.query.split("&"))
    if config.get("SMTP_PASSWORD"):
        secrets.add(config["SMTP_PASSWORD"])
    for secret in sorted(secrets, key=len, reverse=True):
        if secret == url or len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, REDACTED)
    return text



def send_webhook(message: str) -> None:
    """POST `{"text": …}`, which Slack, Mattermost, Rocket.Chat and others accept."""
    response = requests.post(
        current_app.config["ALERT_WEBHOOK_URL"],
        json={"text": f"[MercadoPago webhooks] {message}"},
        timeout=current_app.config["HTTP_TIMEOUT"],
    )
    response.raise_for_status()


def send_email(message: str) -> None:
    config = current_app.config
    email = EmailMessage()
    email["Subject"] = "[MercadoPago webhooks] " + message.splitlines()[0][:120]
    email["From"] = config["ALERT_EMAIL_FROM"]
    email["To"] = config["ALERT_EMAIL_TO"]
    email.set_content(message)
    with smtplib.SMTP(
        config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["HTTP_TIMEOUT"]
    ) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls()
        if config.get("SMTP_USERNAME"):
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        smtp.send_message(email)


def _read_time(key: str) -> datetime | None:
    try:
        value = queueing.get_redis().get(key)
    except RedisError:
        return None
    return parse_iso(value.decode()) if value else None


def _write_time(key: str, value: datetime) -> None:
    try:
        queueing.get_redis().set(key, isoformat(value))
    except RedisError as exc:  # next time the default window is used: at worst a repeat
        logger.warning("alert state not saved: %s", exc)
