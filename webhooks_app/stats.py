"""Counts for operators."""

from __future__ import annotations

from sqlalchemy import func, select

from .extensions import db
from .models import EventStatus, Payment, WebhookEvent


def event_counts() -> dict[str, int]:
    """Events by status, every status present (zero when none)."""
    counts = dict.fromkeys(EventStatus.ALL, 0)
    rows = db.session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    )
    counts.update({status: count for status, count in rows})
    return counts


def summary() -> dict[str, object]:
    """Event counts, total, payments and the share of finished events that succeeded."""
    counts = event_counts()
    finished = counts[EventStatus.SUCCESS] + counts[EventStatus.FAILED]
    return {
        "events": counts,
        "total_events": sum(counts.values()),
        "payments": db.session.scalar(select(func.count()).select_from(Payment)),
        "success_rate": round(counts[EventStatus.SUCCESS] / finished, 4) if finished else None,
    }
