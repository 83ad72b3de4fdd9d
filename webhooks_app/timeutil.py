"""Time helpers: the database stores naive UTC datetimes (SQLite keeps no zone)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (what every DateTime column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Convert an aware datetime to naive UTC; a naive one is taken as UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_iso(value: str | None) -> datetime | None:
    """Parse an ISO 8601 timestamp (MercadoPago's `2026-11-29T10:00:00.000-04:00`) to naive UTC."""
    if not value:
        return None
    try:
        return to_naive_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def isoformat(value: datetime | None) -> str | None:
    """Render a naive UTC datetime as ISO 8601 with a `Z`."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def milliseconds_between(start: datetime, end: datetime) -> int:
    """Whole milliseconds from `start` to `end` (an attempt's `duration_ms`)."""
    return int((end - start).total_seconds() * 1000)
