"""Catch-up: ask MercadoPago which payments changed, for notifications that never came.

A notification MercadoPago never delivered (our endpoint down for days, a
misconfigured URL) is lost to every webhook gateway. This closes the hole: it
searches MercadoPago's payments by last update since the previous run and
creates an event (source `catch_up`) for each payment whose local copy is
missing or older. The event id is `catchup:<payment id>:<date_last_updated>`,
so running it twice, or from two processes, creates each event once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from redis import RedisError

from . import queueing
from .clients import mercadopago_client
from .handlers.follow_up import payment_is_current, queue_event
from .holds import catch_up_held
from .timeutil import isoformat, parse_iso, utcnow

logger = logging.getLogger(__name__)

CURSOR_KEY = "webhooks:catch-up:cursor"
# Payments updated while the previous search was paging can be missed; look back a bit.
OVERLAP = timedelta(minutes=5)


@dataclass
class CatchUpReport:
    """What one run did."""

    since: datetime | None = None
    scanned: int = 0
    created: list[int] = field(default_factory=list)
    skipped_reason: str | None = None


def catch_up(since: datetime | None = None, now: datetime | None = None) -> CatchUpReport:
    """Create events for payments changed since `since` (default: the last run) that we lack."""
    if not current_app.config.get("MP_ACCESS_TOKEN"):
        return CatchUpReport(skipped_reason="no MP_ACCESS_TOKEN configured")
    if (held := catch_up_held()) is not None:  # h6: no MercadoPago call while its stage is held
        return CatchUpReport(skipped_reason=held)
    now = now or utcnow()
    since = since or _cursor() or now - timedelta(seconds=current_app.config["CATCH_UP_LOOKBACK"])
    report = CatchUpReport(since=since)
    newest = since
    for payment in mercadopago_client().iter_payments_updated_since(since):
        report.scanned += 1
        updated = parse_iso(payment.get("date_last_updated"))
        if updated and updated > newest:
            newest = updated
        event_id = _create_event_if_behind(payment, updated)
        if event_id is not None:
            report.created.append(event_id)
    _save_cursor(max(since, min(newest, now) - OVERLAP))
    logger.info(
        "catch-up since %s: %d payment(s) scanned, %d event(s) created",
        isoformat(since),
        report.scanned,
        len(report.created),
    )
    return report


def _create_event_if_behind(payment: dict, updated: datetime | None) -> int | None:
    """An event for the payment unless our copy is as new, or an event about it waits."""
    payment_id = str(payment["id"])
    if payment_is_current(payment_id, modified=updated):
        return None
    return queue_event(
        event_type="payment",
        resource_id=payment_id,
        webhook_id=f"catchup:{payment_id}:{payment.get('date_last_updated') or 'unknown'}",
        source="catch_up",
        action="catch_up",
        payload={k: payment.get(k) for k in ("id", "status", "date_last_updated")},
    )


def _cursor() -> datetime | None:
    try:
        value = queueing.get_redis().get(CURSOR_KEY)
    except RedisError as exc:
        logger.warning("catch-up cursor unavailable (%s); using the look-back", exc)
        return None
    return parse_iso(value.decode()) if value else None


def _save_cursor(value: datetime) -> None:
    try:
        queueing.get_redis().set(CURSOR_KEY, isoformat(value))
    except RedisError as exc:  # the next run repeats the look-back: harmless, idempotent
        logger.warning("catch-up cursor not saved: %s", exc)
