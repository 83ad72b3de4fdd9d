"""Retention: finished events lose their stored copies after RETENTION_DAYS.

A purged event keeps its ids, type, status, times, attempts (their outcome and
error message) and its link to its payment; it loses `raw_body`, `payload`,
`headers`, `query` and its attempts' tracebacks, and gets `purged_at`. The rows
those events wrote in the tables holding payer data (payments, subscriptions,
merchant orders, chargebacks, fraud alerts and claims: personal_data.py), when
not written since the cutoff, keep only the fields the service uses and the
financial facts. `failed` events are kept until replayed, or purged explicitly
(`include_failed`).

The work goes in batches of RETENTION_BATCH_SIZE rows, one short transaction each
(retention_batch.py: one range scan of a partial index, no row visited twice), and
takes at most RETENTION_DUTY of the wall time: after each batch the purge sleeps in
proportion to what that batch took, so that on a loaded machine, where batches take
longer, it backs off by as much (BENCHMARKS.md, "Retention purge").

Each account may have a retention of its own (`accounts.retention_days`; empty:
RETENTION_DAYS; 0: keep everything). The scheduler's round purges each distinct
retention in turn, its accounts picked by `account_id IN (…)` in the same batches (the
deployment's own: every account but those, `NOT IN`); with no account of its own
retention, a round is the one unscoped purge of before accounts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, func, select, text

from .accounts import Account
from .extensions import db
from .models import PURGE_DUE, WebhookEvent
from .personal_data import PERSONAL_TABLES
from .retention_batch import PURGE_DUE_WITH_FAILED, AccountScope, purge_batch
from .timeutil import utcnow

logger = logging.getLogger(__name__)

_events = WebhookEvent.__table__
_LABELS = {spec.name: spec.label for spec in PERSONAL_TABLES}


@dataclass
class PurgeReport:
    """What one purge run did (or, with dry_run, would do)."""

    cutoff: datetime
    events: int = 0
    attempts: int = 0
    reduced: dict[str, int] = field(default_factory=dict)  # copies reduced, by table
    batches: int = 0
    seconds: float = 0.0  # wall time, pauses included
    busy: float = 0.0  # time spent in batches
    more: bool = False  # stopped by its time budget with rows left
    rest: float = 0.0  # the pause still owed when it stopped (the duty cycle's)
    dry_run: bool = False

    def add(self, other: PurgeReport) -> PurgeReport:
        """This report and the next one of the same round (another retention's) as one."""
        self.events += other.events
        self.attempts += other.attempts
        for name, count in other.reduced.items():
            self.reduced[name] = self.reduced.get(name, 0) + count
        self.batches += other.batches
        self.seconds += other.seconds
        self.busy += other.busy
        self.more, self.rest = other.more, other.rest
        return self

    @property
    def payments(self) -> int:
        return self.reduced.get("payments", 0)

    def summary(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        text_ = f"{verb} {self.events} event(s) finished before {self.cutoff:%Y-%m-%d %H:%M:%S}"
        if not self.dry_run:
            copies = [f"{self.payments} payment copy(ies) reduced"] + [
                f"{count} {_LABELS.get(name, name)} copy(ies) reduced"
                for name, count in self.reduced.items()
                if count and name != "payments"
            ]
            text_ += (
                f", {self.attempts} traceback(s), {', '.join(copies)}, "
                f"in {self.batches} batch(es), {self.seconds:.1f}s"
            )
        return text_ + ("; more remain" if self.more else "")


def retention_cutoff(now: datetime | None = None) -> datetime | None:
    """Finished before this is purged; None when RETENTION_DAYS is 0 (keep everything)."""
    days = current_app.config["RETENTION_DAYS"]
    return None if days <= 0 else (now or utcnow()) - timedelta(days=days)


def retention_groups(now: datetime | None = None) -> list[tuple[datetime, AccountScope | None]]:
    """(cutoff, accounts) for each distinct retention: the deployment's (RETENTION_DAYS)
    for every account without one of its own, then each other retention's accounts.
    None as the accounts: all of them (no account has a retention of its own)."""
    now = now or utcnow()
    days = current_app.config["RETENTION_DAYS"]
    own: dict[float, list[int]] = {}
    rows = db.session.execute(
        select(Account.id, Account.retention_days).where(Account.retention_days.is_not(None))
    )
    for account_id, account_days in rows:
        if account_days != days:
            own.setdefault(account_days, []).append(account_id)
    groups: list[tuple[datetime, AccountScope | None]] = []
    others = tuple(sorted(i for ids in own.values() for i in ids))
    if days > 0:
        groups.append((now - timedelta(days=days), AccountScope(others, True) if others else None))
    for account_days, ids in sorted(own.items()):
        if account_days > 0:
            groups.append((now - timedelta(days=account_days), AccountScope(tuple(sorted(ids)))))
    return groups


def duty_pause(spent: float, duty: float) -> float:
    """The pause after a batch that took `spent` seconds, so that batches take `duty` of
    the wall time."""
    return spent * (1.0 - duty) / duty if 0 < duty < 1 else 0.0


def purge(
    cutoff: datetime,
    *,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    include_failed: bool = False,
    dry_run: bool = False,
    duty: float | None = None,
    accounts: AccountScope | None = None,
) -> PurgeReport:
    """Purge events finished before `cutoff` (of `accounts` if given: see
    `retention_groups`), batch by batch, until none is left or the next batch would start
    after `max_seconds` (then `more` is set), taking at most `duty` of the wall time
    (default RETENTION_DUTY; 1 = flat out). `dry_run` only counts."""
    config = current_app.config
    size = batch_size or config["RETENTION_BATCH_SIZE"]
    duty = config["RETENTION_DUTY"] if duty is None else duty
    report = PurgeReport(cutoff, dry_run=dry_run)
    if dry_run:
        due = PURGE_DUE_WITH_FAILED if include_failed else PURGE_DUE
        query = select(func.count()).select_from(_events)
        query = query.where(text(due), _events.c.processed_at < cutoff)
        if accounts is not None:
            ids = _events.c.account_id.in_(bindparam("ids", list(accounts.ids), expanding=True))
            query = query.where(~ids if accounts.exclude else ids)
        report.events = db.session.scalar(query)
        return report
    started = time.monotonic()
    while True:
        batch_started = time.monotonic()
        batch = purge_batch(cutoff, size, include_failed=include_failed, accounts=accounts)
        spent = time.monotonic() - batch_started
        report.busy += spent
        report.batches += 1
        report.events += batch.events
        report.attempts += batch.attempts
        for name, count in batch.reduced.items():
            report.reduced[name] = report.reduced.get(name, 0) + count
        rest = duty_pause(spent, duty)
        report.seconds = time.monotonic() - started
        if batch.selected < size:
            return report
        if max_seconds is not None and report.seconds + rest >= max_seconds:
            report.more, report.rest = True, rest
            return report
        if rest > 0:
            time.sleep(rest)


def purge_round() -> PurgeReport | None:
    """scheduler.py's task: purge what each account's retention says (RETENTION_DAYS by
    default), each retention in turn, for at most one round's time in all."""
    budget = current_app.config["RETENTION_ROUND_SECONDS"]
    started = time.monotonic()
    total: PurgeReport | None = None
    for cutoff, accounts in retention_groups():
        left = max(0.0, budget - (time.monotonic() - started))
        report = purge(cutoff, max_seconds=left, accounts=accounts)
        if report.events or any(report.reduced.values()):
            whose = "" if accounts is None else f" ({accounts_text(accounts)})"
            logger.info("retention%s: %s", whose, report.summary())
        total = report if total is None else total.add(report)
        if report.more:  # the round's time is spent: the next round goes on
            break
    return total


def accounts_text(accounts: AccountScope) -> str:
    """Which accounts a retention group is, for the log and the CLI."""
    ids = ", ".join(str(i) for i in accounts.ids)
    return f"every account but {ids}" if accounts.exclude else f"accounts {ids}"


def next_round_in(report: object, interval: float) -> float:
    """When the scheduler's next round is due: as soon as the duty cycle allows while
    rows remain (a backlog drains at RETENTION_DUTY), else after RETENTION_INTERVAL."""
    if isinstance(report, PurgeReport) and report.more:
        return report.rest
    return interval
