"""Numbers for operators: counts, throughput, latency, queue depth.

Everything here runs the same on SQLite and PostgreSQL: the only dialect
difference (truncating a timestamp to its minute) is isolated in
`_minute_bucket`, and percentiles are computed in Python over a bounded sample.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from redis import RedisError
from sqlalchemy import ColumnElement, func, select

from . import queueing
from .accounts import all_account_ids
from .breaker import states_for_display as breaker_states
from .extensions import db
from .filters import of_account
from .models import EventStatus, Payment, WebhookEvent
from .sql import dialect_name
from .timeutil import isoformat, utcnow

logger = logging.getLogger(__name__)

# Latency percentiles look at the most recent successes in the window, at most this many.
LATENCY_SAMPLE = 10_000
PERCENTILES = (50, 95, 99)
# The throughput chart keeps at most this many bars; longer windows use wider buckets.
MAX_BUCKETS = 120


def event_counts(*, account_id: int | None = None) -> dict[str, int]:
    """Events by status, every status present (zero when none)."""
    counts = dict.fromkeys(EventStatus.ALL, 0)
    rows = db.session.execute(
        of_account(select(WebhookEvent.status, func.count()), WebhookEvent, account_id).group_by(
            WebhookEvent.status
        )
    )
    counts.update({status: count for status, count in rows})
    return counts


def summary(*, account_id: int | None = None) -> dict[str, object]:
    """Event counts, total, payments and the share of finished events that succeeded."""
    counts = event_counts(account_id=account_id)
    finished = counts[EventStatus.SUCCESS] + counts[EventStatus.FAILED]
    return {
        "events": counts,
        "total_events": sum(counts.values()),
        "payments": db.session.scalar(
            of_account(select(func.count()).select_from(Payment), Payment, account_id)
        ),
        "success_rate": round(counts[EventStatus.SUCCESS] / finished, 4) if finished else None,
    }


def dashboard(
    hours: int = 1, now: datetime | None = None, *, account_id: int | None = None
) -> dict[str, Any]:
    """Everything the stats page, `GET /api/stats` and `flask webhooks stats` show; of one
    account's events (and its bulk queue) if `account_id` is given."""
    now = now or utcnow()
    data: dict[str, Any] = summary(account_id=account_id)
    data["window_hours"] = hours
    data["throughput"] = throughput(hours, now, account_id=account_id)
    data["latency"] = latency_percentiles(hours, now, account_id=account_id)
    data["queue"] = queue_depth(account_id=account_id)
    data["oldest_pending"] = oldest_pending(now, account_id=account_id)
    data["breakers"] = breaker_states()  # h6: circuit breakers per upstream
    data["generated_at"] = isoformat(now)
    return data


def events_per_minute(hours: int = 1, now: datetime | None = None) -> dict[datetime, int]:
    """Events received in each minute of the last `hours` hours (minutes with none left out)."""
    return {
        minute: sum(statuses.values())
        for minute, statuses in events_per_minute_by_status(hours, now).items()
    }


def events_per_minute_by_status(
    hours: int = 1, now: datetime | None = None, *, account_id: int | None = None
) -> dict[datetime, dict[str, int]]:
    """Events received in each minute of the window, split by their status now."""
    now = now or utcnow()
    bucket = _minute_bucket(WebhookEvent.received_at)
    rows = db.session.execute(
        of_account(select(bucket, WebhookEvent.status, func.count()), WebhookEvent, account_id)
        .where(WebhookEvent.received_at >= now - timedelta(hours=hours))
        .group_by(bucket, WebhookEvent.status)
    )
    counts: dict[datetime, dict[str, int]] = {}
    for minute, status, count in rows:
        if isinstance(minute, str):  # SQLite returns the strftime text
            minute = datetime.fromisoformat(minute)
        statuses = counts.setdefault(minute, {})
        statuses[status] = statuses.get(status, 0) + count
    return counts


def throughput(
    hours: int = 1, now: datetime | None = None, *, account_id: int | None = None
) -> dict[str, Any]:
    """Events per minute over the window, in at most MAX_BUCKETS buckets (oldest first).

    Each bucket's `per_minute` is the average rate over its minutes, and
    `by_status` splits its count by the events' current status.
    """
    now = now or utcnow()
    per_minute = events_per_minute_by_status(hours, now, account_id=account_id)
    minutes = hours * 60
    width = max(1, math.ceil(minutes / MAX_BUCKETS))
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=math.ceil(minutes / width) * width)
    buckets = []
    cursor = start
    while cursor < end:
        by_status = dict.fromkeys(EventStatus.ALL, 0)
        for i in range(width):
            for status, count in per_minute.get(cursor + timedelta(minutes=i), {}).items():
                by_status[status] = by_status.get(status, 0) + count
        count = sum(by_status.values())
        buckets.append(
            {
                "start": isoformat(cursor),
                "count": count,
                "per_minute": round(count / width, 2),
                "by_status": by_status,
            }
        )
        cursor += timedelta(minutes=width)
    total = sum(sum(statuses.values()) for statuses in per_minute.values())
    return {
        "bucket_minutes": width,
        "buckets": buckets,
        "total": total,
        "per_minute": round(total / minutes, 2),
    }


def latency_percentiles(
    hours: int = 24, now: datetime | None = None, *, account_id: int | None = None
) -> dict[str, Any]:
    """Seconds from receipt to success (p50/p95/p99) of events received in the window.

    Measured on the most recent LATENCY_SAMPLE successes, so it costs the same
    on a million rows; `sample` says how many were measured.
    """
    now = now or utcnow()
    rows = db.session.execute(
        of_account(
            select(WebhookEvent.received_at, WebhookEvent.processed_at), WebhookEvent, account_id
        )
        .where(
            WebhookEvent.status == EventStatus.SUCCESS,
            WebhookEvent.received_at >= now - timedelta(hours=hours),
            WebhookEvent.processed_at.is_not(None),
        )
        .order_by(WebhookEvent.received_at.desc())
        .limit(LATENCY_SAMPLE)
    )
    latencies = sorted(
        max(0.0, (processed - received).total_seconds()) for received, processed in rows
    )
    result: dict[str, Any] = {f"p{p}": percentile(latencies, p / 100) for p in PERCENTILES}
    result["sample"] = len(latencies)
    return result


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); `values` sorted."""
    if not values:
        return None
    rank = (len(values) - 1) * fraction
    low, high = math.floor(rank), math.ceil(rank)
    value = values[low] + (values[high] - values[low]) * (rank - low)
    return round(value, 3)


def queue_depth(*, account_id: int | None = None) -> dict[str, Any]:
    """Jobs waiting in the RQ queue, scheduled in rq-scheduler, running, failed in RQ.

    With `account_id`: that account's bulk queue only (the priority queue and the
    scheduler are shared by every account, so `scheduled` is null).
    Redis being down is a fact to show, not an error: `error` says so.
    """
    try:
        if account_id is None:
            # Every queue counts: the priority queue (fraud alerts, claims) and each account's.
            queues = queueing.get_queues(account_ids=all_account_ids())
            scheduled: int | None = queueing.get_scheduler().count()
        else:
            queues = [queueing.get_queue(name=queueing.account_queue_name(account_id))]
            scheduled = None
        queued = sum(queue.count for queue in queues)
        return {
            "queue": queueing.queue_names()[1] if account_id is None else queues[0].name,
            "queues": {queue.name: queue.count for queue in queues},
            "queued": queued,
            "scheduled": scheduled,
            "started": sum(queue.started_job_registry.count for queue in queues),
            "failed": sum(queue.failed_job_registry.count for queue in queues),
            "total": queued + (scheduled or 0),
            "error": None,
        }
    except RedisError as exc:
        logger.warning("queue depth unavailable: %s", exc)
        return {
            "queue": None,
            "queues": None,
            "queued": None,
            "scheduled": None,
            "started": None,
            "failed": None,
            "total": None,
            "error": f"Redis unavailable: {type(exc).__name__}",
        }


def oldest_pending(now: datetime | None = None, *, account_id: int | None = None) -> dict[str, Any]:
    """The oldest `pending` event: when it was received and how long ago (seconds)."""
    now = now or utcnow()
    received = db.session.scalar(
        of_account(select(func.min(WebhookEvent.received_at)), WebhookEvent, account_id).where(
            WebhookEvent.status == EventStatus.PENDING
        )
    )
    if received is None:
        return {"received_at": None, "age_seconds": None}
    if isinstance(received, str):  # SQLite's MIN() loses the column type
        received = datetime.fromisoformat(received)
    return {
        "received_at": isoformat(received),
        "age_seconds": round(max(0.0, (now - received).total_seconds()), 3),
    }


def _minute_bucket(column: Any) -> ColumnElement[Any]:
    """The column's timestamp truncated to the minute, in the database's own dialect."""
    if dialect_name(db.session) == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:00", column)
    return func.date_trunc("minute", column)
