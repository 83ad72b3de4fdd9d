"""Catch-up: ask MercadoPago which payments changed, for notifications that never came.

A notification MercadoPago never delivered (our endpoint down for days, a
misconfigured URL) is lost to every webhook gateway. This closes the hole: it
searches MercadoPago's payments by last update since the previous run and
creates an event (source `catch_up`) for each payment whose local copy is
missing or older. The event id is `catchup:<payment id>:<date_last_updated>`,
so running it twice, or from two processes, creates each event once.

Each account with a MercadoPago access token is caught up in turn, with its own token,
its own cursor in Redis (the default account's is `webhooks:catch-up:cursor`, as before
accounts; another's `…:<account id>`) and its own events; one account's failure (its
token refused, its breaker open) is reported and the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from redis import RedisError
from sqlalchemy import select

from . import accounts, queueing
from .accounts import Account, AccountSettings, account_config, current_account_id
from .clients import mercadopago_client
from .extensions import db
from .handlers.follow_up import payment_is_current, queue_event
from .holds import catch_up_held
from .timeutil import isoformat, parse_iso, utcnow

logger = logging.getLogger(__name__)

CURSOR_KEY = "webhooks:catch-up:cursor"
# Payments updated while the previous search was paging can be missed; look back a bit.
OVERLAP = timedelta(minutes=5)


@dataclass
class CatchUpReport:
    """What one run did (for one account)."""

    since: datetime | None = None
    scanned: int = 0
    created: list[int] = field(default_factory=list)
    skipped_reason: str | None = None
    account: str = accounts.DEFAULT_SLUG
    error: str | None = None  # it failed (MercadoPago refused, Redis …): the others went on

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.account}: failed: {self.error}"
        if self.skipped_reason is not None:
            return f"{self.account}: skipped: {self.skipped_reason}"
        since = f"{self.since:%Y-%m-%d %H:%M:%S}" if self.since else "-"
        return (
            f"{self.account}: scanned {self.scanned} payment(s) since {since}, "
            f"created {len(self.created)} event(s)"
        )


def cursor_key(account_id: int) -> str:
    """Where an account's catch-up remembers how far it got."""
    return CURSOR_KEY if account_id == accounts.DEFAULT_ACCOUNT_ID else f"{CURSOR_KEY}:{account_id}"


def catch_up(since: datetime | None = None, now: datetime | None = None) -> CatchUpReport:
    """Create events for payments changed since `since` (default: the last run) that the
    current account lacks (`accounts.using_account`; default: the default account)."""
    slug = accounts.current_account().slug
    if not account_config().get("MP_ACCESS_TOKEN"):
        return CatchUpReport(skipped_reason="no MP_ACCESS_TOKEN configured", account=slug)
    if (held := catch_up_held()) is not None:  # h6: no MercadoPago call while its stage is held
        return CatchUpReport(skipped_reason=held, account=slug)
    now = now or utcnow()
    since = since or _cursor() or now - timedelta(seconds=current_app.config["CATCH_UP_LOOKBACK"])
    report = CatchUpReport(since=since, account=slug)
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
        "catch-up of %s since %s: %d payment(s) scanned, %d event(s) created",
        slug,
        isoformat(since),
        report.scanned,
        len(report.created),
    )
    return report


def accounts_to_catch_up(slug: str | None = None) -> list[AccountSettings]:
    """The enabled accounts with a MercadoPago access token (the default account: the
    environment's), by id; or the one with `slug` (whatever it has: its report says)."""
    query = select(Account).order_by(Account.id)
    if slug is not None:
        query = query.where(Account.slug == slug)
    else:
        query = query.where(Account.enabled.is_(True))
    found = [accounts.settings_of(account) for account in db.session.scalars(query)]
    db.session.commit()  # end the read: each account's run has transactions of its own
    if slug is not None:
        return found
    return [settings for settings in found if settings.config.get("MP_ACCESS_TOKEN")]


def catch_up_accounts(
    slug: str | None = None, since: datetime | None = None
) -> list[CatchUpReport]:
    """Catch up every account (or the one with `slug`), each with its own token, cursor and
    events; one's failure is in its report, and the next goes on."""
    reports = []
    for settings in accounts_to_catch_up(slug):
        with accounts.using_account(settings):
            if not settings.enabled:
                reports.append(CatchUpReport(skipped_reason="disabled", account=settings.slug))
                continue
            try:
                reports.append(catch_up(since=since))
            except Exception as exc:  # noqa: BLE001 - one account's failure stops only it
                db.session.rollback()
                logger.exception("catch-up of %s failed", settings.slug)
                reports.append(CatchUpReport(account=settings.slug, error=str(exc)[:300]))
    return reports


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
        value = queueing.get_redis().get(cursor_key(current_account_id()))
    except RedisError as exc:
        logger.warning("catch-up cursor unavailable (%s); using the look-back", exc)
        return None
    return parse_iso(value.decode()) if value else None


def _save_cursor(value: datetime) -> None:
    try:
        queueing.get_redis().set(cursor_key(current_account_id()), isoformat(value))
    except RedisError as exc:  # the next run repeats the look-back: harmless, idempotent
        logger.warning("catch-up cursor not saved: %s", exc)
