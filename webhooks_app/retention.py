"""Retention: finished events lose their stored copies after RETENTION_DAYS.

A purged event keeps its ids, type, status, times, attempts (their outcome and
error message) and its link to its payment; it loses `raw_body`, `payload`,
`headers`, `query` and its attempts' tracebacks, and gets `purged_at`. The
payments those events touched, when not updated since the cutoff, keep only the
fields the service uses and the financial facts (`pii.reduce_payment`). `failed`
events are kept until replayed, or purged explicitly (`include_failed`).

The work is done in batches of RETENTION_BATCH_SIZE rows, one short transaction
each: a batch is one range scan of the partial index `ix_webhook_events_purge_due`
(finished, not yet purged, by `processed_at`), which a purged row leaves, so the
purge never revisits a row nor scans the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import DateTime, Integer, and_, bindparam, func, null, select, text, update

from .extensions import db
from .models import PURGE_DUE, EventStatus, Payment, WebhookAttempt, WebhookEvent
from .pii import reduce_payment
from .sql import dialect_name
from .timeutil import utcnow

logger = logging.getLogger(__name__)

_events = WebhookEvent.__table__
_attempts = WebhookAttempt.__table__
_payments = Payment.__table__
# A payment is reduced with the purge of an event that touched it unless its copy was
# written later than this after the cutoff: then a later event wrote it, and that event's
# own purge reduces it. The slack covers the attempt's own writes, which land a little
# after its `processed_at` (the GHL fields) or before it (a retried attempt's upsert).
PAYMENT_SLACK = timedelta(hours=1)
# What a purge drops from an event; SQL NULL (a JSON column would store None as 'null').
EVENT_COPIES = {"raw_body": null(), "payload": null(), "headers": null(), "query": null()}


@dataclass
class PurgeReport:
    """What one purge run did (or, with dry_run, would do)."""

    cutoff: datetime
    events: int = 0
    payments: int = 0
    attempts: int = 0
    batches: int = 0
    seconds: float = 0.0
    more: bool = False  # stopped by its time budget with rows left
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        text_ = f"{verb} {self.events} event(s) finished before {self.cutoff:%Y-%m-%d %H:%M:%S}"
        if not self.dry_run:
            text_ += (
                f", {self.attempts} traceback(s), {self.payments} payment copy(ies) reduced, "
                f"in {self.batches} batch(es), {self.seconds:.1f}s"
            )
        return text_ + ("; more remain" if self.more else "")


def retention_cutoff(now: datetime | None = None) -> datetime | None:
    """Finished before this is purged; None when RETENTION_DAYS is 0 (keep everything)."""
    days = current_app.config["RETENTION_DAYS"]
    return None if days <= 0 else (now or utcnow()) - timedelta(days=days)


def _due(cutoff: datetime, include_failed: bool) -> Any:
    """The WHERE of the events to purge (the partial index's predicate, word for word)."""
    if include_failed:
        statuses = (EventStatus.SUCCESS, EventStatus.IGNORED, EventStatus.FAILED)
        return and_(
            _events.c.purged_at.is_(None),
            _events.c.status.in_(statuses),
            _events.c.processed_at < cutoff,
        )
    return and_(text(PURGE_DUE), _events.c.processed_at < cutoff)


def purge(
    cutoff: datetime,
    *,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    include_failed: bool = False,
    dry_run: bool = False,
    pause: float | None = None,
) -> PurgeReport:
    """Purge events finished before `cutoff`, batch by batch, until none is left or
    `max_seconds` have passed (then `more` is set), `pause` seconds between batches
    (default RETENTION_BATCH_PAUSE). `dry_run` only counts them."""
    size = batch_size or current_app.config["RETENTION_BATCH_SIZE"]
    pause = current_app.config["RETENTION_BATCH_PAUSE"] if pause is None else pause
    report = PurgeReport(cutoff, dry_run=dry_run)
    where = _due(cutoff, include_failed)
    if dry_run:
        report.events = db.session.scalar(select(func.count()).select_from(_events).where(where))
        return report
    started = time.monotonic()
    while True:
        done = purge_batch(where, cutoff, size, report, include_failed)
        report.seconds = time.monotonic() - started
        if done < size:
            return report
        if max_seconds is not None and report.seconds >= max_seconds:
            report.more = True
            return report
        if pause > 0:
            time.sleep(pause)


def _next_batch_statement(dialect: str) -> Any:
    """The next batch: one range scan of the partial index, in `processed_at` order.

    SQLite's planner, without statistics, prefers (status, received_at) and a sort:
    `INDEXED BY` names the index (SQLAlchemy renders no table hints for SQLite).
    """
    hint = " INDEXED BY ix_webhook_events_purge_due" if dialect == "sqlite" else ""
    return text(
        f"SELECT id, payment_id FROM webhook_events{hint} WHERE {PURGE_DUE} "
        "AND processed_at < :cutoff ORDER BY processed_at LIMIT :size"
    ).bindparams(bindparam("cutoff", type_=DateTime), bindparam("size", type_=Integer))


def purge_batch(
    where: Any, cutoff: datetime, size: int, report: PurgeReport, include_failed: bool = False
) -> int:
    """Purge the next `size` due events in one transaction; return how many were selected."""
    if include_failed:
        query: Any = (
            select(_events.c.id, _events.c.payment_id)
            .where(where)
            .order_by(_events.c.processed_at)
            .limit(size)
        )
    else:
        query = _next_batch_statement(dialect_name(db.session))
    rows = db.session.execute(query, {"cutoff": cutoff, "size": size}).all()
    if not rows:
        db.session.rollback()
        return 0
    ids = [row.id for row in rows]
    now = utcnow()
    purged = db.session.execute(
        update(_events)
        .where(_events.c.id.in_(ids), where)  # still due: a replay in between keeps its copies
        .values(**EVENT_COPIES, purged_at=now, updated_at=_events.c.updated_at)
    )
    tracebacks = db.session.execute(
        update(_attempts)
        .where(_attempts.c.event_id.in_(ids), _attempts.c.traceback.is_not(None))
        .values(traceback=null())
    )
    payment_ids = sorted({row.payment_id for row in rows if row.payment_id is not None})
    reduced = reduce_payments(payment_ids, before=cutoff + PAYMENT_SLACK)
    db.session.commit()
    report.events += purged.rowcount
    report.attempts += tracebacks.rowcount
    report.payments += reduced
    report.batches += 1
    return len(rows)


_REDUCE_RAW = (
    update(_payments)
    .where(_payments.c.id == bindparam("reduced_id"))
    # Keeps updated_at: the payments list is ordered by it, and nothing MercadoPago said changed.
    .values(raw=bindparam("reduced_raw"), updated_at=_payments.c.updated_at)
)


def reduce_payments(payment_ids: list[int], *, before: datetime | None = None) -> int:
    """Reduce these payments' raw copies to the kept fields (those not updated since
    `before`, when given); return how many changed. Leaves the transaction open."""
    if not payment_ids:
        return 0
    query = select(_payments.c.id, _payments.c.raw).where(_payments.c.id.in_(payment_ids))
    if before is not None:
        query = query.where(_payments.c.updated_at < before)
    changes = [
        {"reduced_id": row.id, "reduced_raw": reduced}
        for row in db.session.execute(query)
        if (reduced := reduce_payment(row.raw)) is not None and reduced != row.raw
    ]
    if changes:
        db.session.execute(_REDUCE_RAW, changes)
    return len(changes)


def purge_due() -> PurgeReport | None:
    """scheduler.py's task: purge what RETENTION_DAYS says, for at most one round's time."""
    cutoff = retention_cutoff()
    if cutoff is None:
        return None
    config = current_app.config
    report = purge(cutoff, max_seconds=config["RETENTION_ROUND_SECONDS"])
    if report.events or report.payments:
        logger.info("retention: %s", report.summary())
    return report
