"""Erasure of one data subject's personal data (LGPD, Argentina's Law 25.326, GDPR).

`forget(email)` finds the payments of that payer (by `payer_email`, or by any
mention in their stored copy), then every event linked to them or whose stored
copies mention the address, and every attempt whose error text or traceback does:

- payments: `payer_email` emptied, `raw` reduced to the kept fields
  (`pii.reduce_payment`: ids, statuses, amounts, dates; no payer data);
- events: `raw_body`, `payload`, `headers`, `query` dropped (`purged_at` set, as
  retention does), the address replaced in `last_error`;
- attempts: the address replaced in `error` and `traceback`.

Amounts, statuses and ids stay: they are the merchant's financial records. One
`erasures` row records that it happened (when, which surface, by whom, how many
rows), never what was erased. Future log lines never carry an address at all:
logging_setup masks every e-mail in every line. The GoHighLevel contact is not
touched: erase it in GoHighLevel.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Text, bindparam, cast, func, null, or_, select, update

from .extensions import db
from .models import Erasure, Payment, WebhookAttempt, WebhookEvent
from .pii import EMAIL, normalise_email, reduce_payment, subject_hash
from .retention import EVENT_COPIES
from .timeutil import utcnow

logger = logging.getLogger(__name__)

ERASED = "[erased e-mail]"
MAX_EMAIL_LENGTH = 320
_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__
_payments = Payment.__table__


class ErasureError(ValueError):
    """The request cannot be carried out; the message says why."""


@dataclass
class ErasureReport:
    """How many rows an erasure touched, and whether the same person was erased before."""

    payments: int = 0
    events: int = 0
    attempts: int = 0
    erasure_id: int | None = None  # None: nothing was left to erase, nothing recorded
    previously: datetime | None = None  # the last earlier erasure of the same address

    def summary(self) -> str:
        text = (
            f"erased: {self.payments} payment(s), {self.events} event(s), "
            f"{self.attempts} attempt(s)"
        )
        if self.previously is not None:
            text += f" (already erased on {self.previously:%Y-%m-%d %H:%M:%S} UTC)"
        return text


def _like(address: str) -> str:
    escaped = address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _mentions(column: Any, pattern: str) -> Any:
    return func.lower(cast(column, Text)).like(pattern, escape="\\")


def _scrub(value: str | None, address: str) -> str | None:
    if value is None:
        return None
    return re.sub(re.escape(address), ERASED, value, flags=re.IGNORECASE)


def forget(email: str, *, surface: str, requested_by: str | None = None) -> ErasureReport:
    """Erase this payer's personal data everywhere it is stored; record that it happened.

    A repeated request finds nothing left: it is answered with the earlier
    erasure's date (recognised by the keyed hash) and not recorded again.
    """
    address = normalise_email(email)
    if len(address) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(address):
        raise ErasureError("give the payer's e-mail address, e.g. buyer@example.com")
    pattern = _like(address)
    report = ErasureReport()

    payments = db.session.execute(
        select(_payments.c.id, _payments.c.raw).where(
            or_(func.lower(_payments.c.payer_email) == address, _mentions(_payments.c.raw, pattern))
        )
    ).all()
    payment_ids = [row.id for row in payments]
    if payments:
        db.session.execute(
            update(_payments)
            .where(_payments.c.id == bindparam("erased_id"))
            .values(payer_email=null(), raw=bindparam("erased_raw"))
            .execution_options(synchronize_session=False),
            [{"erased_id": row.id, "erased_raw": reduce_payment(row.raw)} for row in payments],
        )
    report.payments = len(payments)

    # One scan of the events' stored copies (an erasure is rare; no lock is taken by it).
    mentioned = or_(
        _mentions(_events.c.raw_body, pattern),
        _mentions(_events.c.payload, pattern),
        _mentions(_events.c.headers, pattern),
        _mentions(_events.c.query, pattern),
        _mentions(_events.c.last_error, pattern),
    )
    linked = _events.c.payment_id.in_(payment_ids) if payment_ids else None
    events = db.session.execute(
        select(_events.c.id, _events.c.last_error, _events.c.purged_at).where(
            or_(linked, mentioned) if linked is not None else mentioned
        )
    ).all()
    now = utcnow()
    if events:
        db.session.execute(
            update(_events)
            .where(_events.c.id == bindparam("erased_id"))
            .values(
                **EVENT_COPIES,
                last_error=bindparam("erased_error"),
                purged_at=func.coalesce(_events.c.purged_at, now),
            ),
            [
                {"erased_id": row.id, "erased_error": _scrub(row.last_error, address)}
                for row in events
            ],
        )
    report.events = len(events)

    attempts = db.session.execute(
        select(_attempts.c.id, _attempts.c.error, _attempts.c.traceback).where(
            or_(_mentions(_attempts.c.error, pattern), _mentions(_attempts.c.traceback, pattern))
        )
    ).all()
    if attempts:
        db.session.execute(
            update(_attempts)
            .where(_attempts.c.id == bindparam("erased_id"))
            .values(error=bindparam("erased_error"), traceback=bindparam("erased_traceback")),
            [
                {
                    "erased_id": row.id,
                    "erased_error": _scrub(row.error, address),
                    "erased_traceback": _scrub(row.traceback, address),
                }
                for row in attempts
            ],
        )
    report.attempts = len(attempts)

    key = current_app.config.get("SECRET_KEY") or current_app.config.get("MP_WEBHOOK_SECRET")
    digest = subject_hash(address, key)
    if digest is not None:
        report.previously = db.session.scalar(
            select(func.max(Erasure.requested_at)).where(Erasure.subject_hash == digest)
        )
    if report.payments or report.events or report.attempts or report.previously is None:
        erasure = Erasure(
            requested_at=now,
            surface=surface,
            requested_by=requested_by,
            subject_hash=digest,
            payments=report.payments,
            events=report.events,
            attempts=report.attempts,
        )
        db.session.add(erasure)
        db.session.flush()
        report.erasure_id = erasure.id
    db.session.commit()
    logger.info(
        "erasure %s (%s): %s payment(s), %s event(s), %s attempt(s)",
        report.erasure_id, surface, report.payments, report.events, report.attempts,
    )  # fmt: skip
    return report


def recent_erasures(limit: int = 20) -> list[Erasure]:
    """The latest erasures, newest first (for the admin)."""
    return list(
        db.session.scalars(select(Erasure).order_by(Erasure.requested_at.desc()).limit(limit))
    )
