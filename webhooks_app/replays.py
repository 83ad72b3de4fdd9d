"""Replays: one event (`replay_event`, the one replay there is), or many by id or by
filter, for the admin, the API and the CLI, with a report of what happened to each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from .extensions import db
from .filters import EventFilter, of_account
from .models import EventStatus, WebhookEvent
from .pagination import MAX_ID
from .retries import schedule_attempt
from .timeutil import utcnow

logger = logging.getLogger(__name__)

# A bulk retry through the API re-queues at most this many events per call; the
# report's `more` says to call again.
BULK_RETRY_MAX = 1000

BATCH_SIZE = 200


class ReplayRefused(ValueError):
    """The event cannot be replayed in its current state."""


def replay_event(event: WebhookEvent, *, force: bool = False) -> bool:
    """Put an event back to `pending`, due now, with a fresh retry budget, and queue it.

    A `success` event is refused unless `force`; an event being processed is
    always refused. Returns whether the attempt reached Redis (if not, it stays
    `pending` and is picked up from the database).
    """
    if event.status == EventStatus.PROCESSING:
        raise ReplayRefused(f"event {event.id} is being processed right now")
    if event.status == EventStatus.SUCCESS and not force:
        raise ReplayRefused(f"event {event.id} already succeeded (force to replay it anyway)")
    now = utcnow()
    event.status = EventStatus.PENDING
    event.attempts_at_replay = event.attempts
    event.next_retry_at = now
    event.processed_at = None
    event.updated_at = now
    db.session.commit()
    logger.info("event %s replayed", event.id)
    return schedule_attempt(event)


@dataclass
class RetryReport:
    """What a retry did: which events went back to the queue, which were refused and why."""

    requeued: list[int] = field(default_factory=list)
    # Re-queued in the database but not in Redis (it was down): picked up from there later.
    not_queued: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    # Events that matched (a dry run retries none of them).
    matched: list[int] = field(default_factory=list)
    # A bulk retry stopped at its limit while more events matched.
    more: bool = False
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "requeued": len(self.requeued),
            "requeued_ids": self.requeued,
            "not_queued_ids": self.not_queued,
            "refused": [{"id": key, "reason": value} for key, value in self.refused.items()],
            "missing_ids": self.missing,
            "matched": len(self.matched),
            "more": self.more,
            "dry_run": self.dry_run,
        }

    def summary(self) -> str:
        """One line for a person: `re-queued 3 event(s); 1 refused`."""
        if self.dry_run:
            text = f"{len(self.matched)} event(s) would be re-queued"
        else:
            text = f"re-queued {len(self.requeued)} event(s)"
        if self.not_queued:
            text += f" ({len(self.not_queued)} left pending: Redis unavailable)"
        if self.refused:
            text += f"; {len(self.refused)} refused"
        if self.missing:
            text += f"; {len(self.missing)} not found"
        if self.more:
            text += "; more match the filter: run it again"
        return text


def retry_ids(
    ids: Iterable[int], *, force: bool = False, account_id: int | None = None
) -> RetryReport:
    """Retry these events (a `success` one only with `force`); unknown ids are reported.
    With `account_id`, another account's events are reported as missing, not retried."""
    wanted = list(dict.fromkeys(ids))
    # Ids no row can have never reach the database (SQLite cannot even bind them).
    possible = [event_id for event_id in wanted if 0 < event_id <= MAX_ID]
    query = select(WebhookEvent).where(WebhookEvent.id.in_(possible))
    events = {
        event.id: event
        for event in db.session.scalars(of_account(query, WebhookEvent, account_id))
    }
    report = RetryReport()
    for event_id in wanted:
        event = events.get(event_id)
        if event is None:
            report.missing.append(event_id)
            continue
        report.matched.append(event_id)
        _retry(event, force, report)
    return report


def retry_matching(
    event_filter: EventFilter,
    *,
    force: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
) -> RetryReport:
    """Retry every event the filter matches, oldest first; at most `limit` of them."""
    report = RetryReport(dry_run=dry_run)
    for event in _matching(event_filter):
        if limit is not None and len(report.matched) >= limit:
            report.more = True
            break
        report.matched.append(event.id)
        if not dry_run:
            _retry(event, force, report)
    if not dry_run:
        logger.info("bulk retry (%s): %s", event_filter.describe(), report.summary())
    return report


def _matching(event_filter: EventFilter) -> Iterator[WebhookEvent]:
    """The matching events in id order, a batch at a time (keyset on id, not OFFSET)."""
    last_id = 0
    while True:
        batch = list(
            db.session.scalars(
                event_filter.query()
                .where(WebhookEvent.id > last_id)
                .order_by(WebhookEvent.id)
                .limit(BATCH_SIZE)
            )
        )
        if not batch:
            return
        # Read before yielding: each replay commits, which expires the loaded rows.
        last_id, full = batch[-1].id, len(batch) == BATCH_SIZE
        yield from batch
        if not full:
            return


def _retry(event: WebhookEvent, force: bool, report: RetryReport) -> None:
    event_id = event.id
    try:
        queued = replay_event(event, force=force)
    except ReplayRefused as exc:
        report.refused[event_id] = str(exc)
        return
    report.requeued.append(event_id)
    if not queued:
        report.not_queued.append(event_id)
