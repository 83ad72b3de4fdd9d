"""Erasure of one data subject's personal data (LGPD, Argentina's Law 25.326, GDPR).

`forget(email)` goes through personal_data.PERSONAL_TABLES in order and finds that
payer's rows: by the address in an e-mail column or anywhere in the stored copy,
by a payment of theirs found earlier (chargebacks, alerts and merchant orders name
their payment), or by their MercadoPago user id read from an earlier copy. Then:

- those rows: e-mail and payer id columns emptied, `raw` reduced to the table's kept
  fields (ids, statuses, amounts, dates; no payer data);
- events: every event that wrote one of those rows or whose stored copies mention
  the address: `raw_body`, `payload`, `headers`, `query` dropped (`purged_at` set,
  as retention does), the address replaced in `last_error`;
- attempts: the address replaced in `error` and `traceback`.

Amounts, statuses and ids stay: they are the merchant's financial records. One
`erasures` row records that it happened (when, which surface, by whom, how many
payments, events and attempts), never what was erased. Future log lines never
carry an address at all: logging_setup masks every e-mail in every line. The
GoHighLevel contact is not touched: erase it in GoHighLevel.

`account_id` limits an erasure to one account's rows (a merchant's request about its
own customer); without it every account's are erased. The `erasures` row records which.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Text, and_, bindparam, cast, func, null, or_, select, update

from .extensions import db
from .models import Erasure, WebhookAttempt, WebhookEvent
from .personal_data import PAYMENTS, PERSONAL_TABLES, PersonalTable, raw_payer_id
from .pii import EMAIL, normalise_email, reduce_raw, subject_hash
from .retention_batch import EVENT_COPIES
from .timeutil import utcnow

logger = logging.getLogger(__name__)

ERASED = "[erased e-mail]"
MAX_EMAIL_LENGTH = 320
_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__


class ErasureError(ValueError):
    """The request cannot be carried out; the message says why."""


@dataclass
class ErasureReport:
    """How many rows an erasure touched, and whether the same person was erased before."""

    payments: int = 0
    events: int = 0
    attempts: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # every personal table's, by name
    erasure_id: int | None = None  # None: nothing was left to erase, nothing recorded
    previously: datetime | None = None  # the last earlier erasure of the same address

    def summary(self) -> str:
        text = (
            f"erased: {self.payments} payment(s), {self.events} event(s), "
            f"{self.attempts} attempt(s)"
        )
        labels = {spec.name: spec.label for spec in PERSONAL_TABLES}
        for name, count in self.rows.items():
            if count and name != PAYMENTS.name:
                text += f", {count} {labels[name]}(s)"
        if self.previously is not None:
            text += f" (already erased on {self.previously:%Y-%m-%d %H:%M:%S} UTC)"
        return text


@dataclass
class _Subject:
    """What identifies the payer, growing as their rows are found."""

    address: str
    pattern: str  # LIKE pattern of the address
    payment_ids: set[str] = field(default_factory=set)  # MercadoPago payment ids
    payer_ids: set[str] = field(default_factory=set)  # MercadoPago user ids
    account_id: int | None = None  # only this account's rows; None: every account's


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _mentions(column: Any, pattern: str) -> Any:
    return func.lower(cast(column, Text)).like(pattern, escape="\\")


def _scrub(value: str | None, address: str) -> str | None:
    if value is None:
        return None
    return re.sub(re.escape(address), ERASED, value, flags=re.IGNORECASE)


def _belongs(spec: PersonalTable, subject: _Subject) -> Any | None:
    """The rows of `spec` that are the subject's (None: nothing to find them by yet)."""
    clauses = [func.lower(spec.column(name)) == subject.address for name in spec.emails]
    if spec.raw is not None:
        clauses.append(_mentions(spec.column(spec.raw), subject.pattern))
    if subject.payment_ids:
        ids = sorted(subject.payment_ids)
        clauses += [spec.column(name).in_(ids) for name in spec.payment_ids]
        clauses += [
            _mentions(spec.column(name), _like(f'"{pid}"'))
            for name in spec.payment_id_lists
            for pid in ids
        ]
    if subject.payer_ids:
        clauses += [spec.column(name).in_(sorted(subject.payer_ids)) for name in spec.payer_ids]
    if not clauses:
        return None
    if subject.account_id is not None:
        return and_(spec.column("account_id") == subject.account_id, or_(*clauses))
    return or_(*clauses)


def _erase_rows(spec: PersonalTable, subject: _Subject) -> list[Any]:
    """Empty the subject's data in `spec`'s rows; return those rows as they were."""
    table, belongs = spec.table, _belongs(spec, subject)
    if belongs is None:
        return []
    rows = db.session.execute(select(table).where(belongs)).all()
    if not rows:
        return rows
    values: dict[str, Any] = {name: null() for name in (*spec.emails, *spec.payer_ids)}
    params = [{"erased_id": row.id} for row in rows]
    if spec.raw is not None:
        values[spec.raw] = bindparam("erased_raw")
        for param, row in zip(params, rows, strict=True):
            param["erased_raw"] = reduce_raw(row._mapping[spec.raw], spec.kept)
    db.session.execute(
        update(table).where(table.c.id == bindparam("erased_id")).values(values), params
    )
    for row in rows:  # what finds the subject's rows in the tables that come next
        data = row._mapping
        subject.payment_ids.update(str(data[n]) for n in spec.payment_ids if data[n])
        for name in spec.payment_id_lists:
            subject.payment_ids.update(str(p) for p in data[name] or [] if p is not None)
        subject.payer_ids.update(str(data[n]) for n in spec.payer_ids if data[n])
        if spec.raw is not None and spec.raw_payer_id:
            if (payer := raw_payer_id(data[spec.raw], spec.raw_payer_id)) is not None:
                subject.payer_ids.add(payer)
    return rows


def forget(
    email: str, *, surface: str, requested_by: str | None = None, account_id: int | None = None
) -> ErasureReport:
    """Erase this payer's personal data everywhere it is stored (in one account's rows only
    with `account_id`); record that it happened.

    A repeated request finds nothing left: it is answered with the earlier
    erasure's date (recognised by the keyed hash) and not recorded again.
    """
    address = normalise_email(email)
    if len(address) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(address):
        raise ErasureError("give the payer's e-mail address, e.g. buyer@example.com")
    subject = _Subject(address, _like(address), account_id=account_id)
    report = ErasureReport()

    linked = []  # the events that wrote the rows erased
    for spec in PERSONAL_TABLES:
        rows = _erase_rows(spec, subject)
        report.rows[spec.name] = len(rows)
        link = spec.event_link
        if rows and link is not None:
            keys = sorted({row._mapping[link.column] for row in rows})
            clause = _events.c[link.event_column].in_(keys)
            linked.append(and_(_events.c.type.in_(link.topics), clause) if link.topics else clause)
    report.payments = report.rows[PAYMENTS.name]

    # One scan of the events' stored copies (an erasure is rare; no lock is taken by it).
    mentioned = or_(
        _mentions(_events.c.raw_body, subject.pattern),
        _mentions(_events.c.payload, subject.pattern),
        _mentions(_events.c.headers, subject.pattern),
        _mentions(_events.c.query, subject.pattern),
        _mentions(_events.c.last_error, subject.pattern),
    )
    found = select(_events.c.id, _events.c.last_error).where(or_(*linked, mentioned))
    if account_id is not None:
        found = found.where(_events.c.account_id == account_id)
    events = db.session.execute(found).all()
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
    report.attempts = _scrub_attempts(subject)
    _record(report, address, surface, requested_by, now, account_id)
    db.session.commit()
    logger.info(
        "erasure %s (%s): %s payment(s), %s event(s), %s attempt(s), rows by table %s",
        report.erasure_id, surface, report.payments, report.events, report.attempts, report.rows,
    )  # fmt: skip
    return report


def _scrub_attempts(subject: _Subject) -> int:
    """Replace the address in attempts' errors and tracebacks; return how many."""
    found = select(_attempts.c.id, _attempts.c.error, _attempts.c.traceback).where(
        or_(
            _mentions(_attempts.c.error, subject.pattern),
            _mentions(_attempts.c.traceback, subject.pattern),
        )
    )
    if subject.account_id is not None:  # attempts belong to their event's account
        owned = select(_events.c.id).where(_events.c.account_id == subject.account_id)
        found = found.where(_attempts.c.event_id.in_(owned))
    attempts = db.session.execute(found).all()
    if attempts:
        db.session.execute(
            update(_attempts)
            .where(_attempts.c.id == bindparam("erased_id"))
            .values(error=bindparam("erased_error"), traceback=bindparam("erased_traceback")),
            [
                {
                    "erased_id": row.id,
                    "erased_error": _scrub(row.error, subject.address),
                    "erased_traceback": _scrub(row.traceback, subject.address),
                }
                for row in attempts
            ],
        )
    return len(attempts)


def _record(
    report: ErasureReport,
    address: str,
    surface: str,
    requested_by: str | None,
    now: datetime,
    account_id: int | None = None,
) -> None:
    """Add the `erasures` row, unless this repeats an erasure that left nothing behind."""
    key = current_app.config.get("SECRET_KEY") or current_app.config.get("MP_WEBHOOK_SECRET")
    digest = subject_hash(address, key)
    if digest is not None:
        # What covered the same rows before: an erasure of every account, or of this one.
        covered = Erasure.account_id.is_(None)
        if account_id is not None:
            covered = or_(covered, Erasure.account_id == account_id)
        report.previously = db.session.scalar(
            select(func.max(Erasure.requested_at)).where(Erasure.subject_hash == digest, covered)
        )
    touched = report.events or report.attempts or any(report.rows.values())
    if touched or report.previously is None:
        erasure = Erasure(
            requested_at=now,
            surface=surface,
            requested_by=requested_by,
            subject_hash=digest,
            account_id=account_id,
            payments=report.payments,
            events=report.events,
            attempts=report.attempts,
        )
        db.session.add(erasure)
        db.session.flush()
        report.erasure_id = erasure.id


def recent_erasures(limit: int = 20) -> list[Erasure]:
    """The latest erasures, newest first (for the admin)."""
    return list(
        db.session.scalars(select(Erasure).order_by(Erasure.requested_at.desc()).limit(limit))
    )
