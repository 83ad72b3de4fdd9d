"""The operator's numbers: throughput, latency percentiles, queue depth, oldest pending."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from factories import add_event

from webhooks_app.models import EventStatus
from webhooks_app.queueing import get_queue
from webhooks_app.retries import schedule_attempt
from webhooks_app.stats import (
    dashboard,
    events_per_minute,
    latency_percentiles,
    oldest_pending,
    percentile,
    queue_depth,
    throughput,
)
from webhooks_app.timeutil import utcnow

from conftest import make_app, post_webhook

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 11, 29, 12, 30, 30)


def test_percentile_interpolates_between_ranks():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.95) == 95.05
    assert percentile(values, 0.99) == 99.01


def test_latency_of_recent_successes_only(app):
    for seconds in range(1, 101):  # latencies 1 s .. 100 s
        add_event(
            status=EventStatus.SUCCESS, received_at=NOW - timedelta(minutes=5), latency=seconds
        )
    # Outside the window, or not successes: not counted.
    add_event(status=EventStatus.SUCCESS, received_at=NOW - timedelta(hours=3), latency=9999)
    add_event(status=EventStatus.FAILED, received_at=NOW - timedelta(minutes=1), latency=9999)
    add_event(status=EventStatus.IGNORED, received_at=NOW - timedelta(minutes=1), latency=9999)

    latency = latency_percentiles(hours=1, now=NOW)
    assert latency == {"p50": 50.5, "p95": 95.05, "p99": 99.01, "sample": 100}
    assert latency_percentiles(hours=24, now=NOW)["sample"] == 101
    assert latency_percentiles(hours=1, now=NOW + timedelta(days=1))["p50"] is None


def test_events_per_minute_and_throughput(app):
    add_event(received_at=datetime(2026, 11, 29, 12, 0, 10))
    add_event(received_at=datetime(2026, 11, 29, 12, 0, 50), status=EventStatus.SUCCESS)
    add_event(received_at=datetime(2026, 11, 29, 12, 29, 0), status=EventStatus.FAILED)
    add_event(received_at=datetime(2026, 11, 29, 11, 0, 0))  # over an hour before NOW

    assert events_per_minute(1, NOW) == {
        datetime(2026, 11, 29, 12, 0): 2,
        datetime(2026, 11, 29, 12, 29): 1,
    }
    hour = throughput(1, NOW)
    assert hour["bucket_minutes"] == 1 and len(hour["buckets"]) == 60
    assert hour["total"] == 3 and hour["per_minute"] == 0.05
    by_start = {bucket["start"]: bucket["count"] for bucket in hour["buckets"]}
    assert by_start["2026-11-29T12:00:00.000Z"] == 2
    assert by_start["2026-11-29T12:29:00.000Z"] == 1
    assert by_start["2026-11-29T12:30:00.000Z"] == 0  # the current minute is the last bar
    assert sum(by_start.values()) == 3
    first = next(b for b in hour["buckets"] if b["start"] == "2026-11-29T12:00:00.000Z")
    assert first["by_status"]["pending"] == 1 and first["by_status"]["success"] == 1
    assert first["by_status"]["failed"] == 0

    day = throughput(24, NOW)
    assert day["bucket_minutes"] == 12 and len(day["buckets"]) == 120
    assert day["total"] == 4 and sum(bucket["count"] for bucket in day["buckets"]) == 4


def test_oldest_pending(app):
    assert oldest_pending(NOW) == {"received_at": None, "age_seconds": None}
    add_event(status=EventStatus.FAILED, received_at=NOW - timedelta(hours=5))
    add_event(status=EventStatus.PENDING, received_at=NOW - timedelta(minutes=10))
    add_event(status=EventStatus.PENDING, received_at=NOW - timedelta(minutes=2))
    assert oldest_pending(NOW) == {"received_at": "2026-11-29T12:20:30.000Z", "age_seconds": 600.0}


def test_queue_depth_counts_queued_and_scheduled_jobs(app, client, sandbox):
    for _ in range(3):
        post_webhook(client, sandbox.state.add_payment()["id"])  # queued, no worker runs
    event = add_event(status=EventStatus.PENDING, next_retry_at=utcnow() + timedelta(minutes=5))
    assert schedule_attempt(event)  # a retry in five minutes: rq-scheduler holds it
    depth = queue_depth()
    assert depth["queue"] == "webhooks-test" == get_queue(app).name
    assert (depth["queued"], depth["scheduled"], depth["total"]) == (3, 1, 4)
    assert depth["error"] is None


def test_queue_depth_when_redis_is_down(sandbox, app):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        depth = queue_depth()
    assert depth["total"] is None and "Redis unavailable" in depth["error"]


def test_dashboard_has_everything(app):
    add_event(status=EventStatus.SUCCESS, latency=2.0)
    add_event(status=EventStatus.FAILED)
    data = dashboard(hours=1)
    assert data["events"]["success"] == 1 and data["events"]["failed"] == 1
    assert data["total_events"] == 2 and data["success_rate"] == 0.5
    assert data["latency"]["p50"] == 2.0 and data["throughput"]["total"] == 2
    assert data["queue"]["error"] is None and data["window_hours"] == 1


def test_the_dashboard_of_one_account_counts_its_events_only(app):
    from accounts_support import create_account

    other = create_account("shop-b")
    add_event(status=EventStatus.SUCCESS, latency=2.0)
    add_event(status=EventStatus.FAILED, account_id=other.id)
    add_event(status=EventStatus.PENDING, account_id=other.id)

    everyone, default, shop_b = (
        dashboard(account_id=account_id) for account_id in (None, 1, other.id)
    )

    assert everyone["total_events"] == 3
    assert default["events"][EventStatus.SUCCESS] == 1 and default["total_events"] == 1
    assert shop_b["events"][EventStatus.FAILED] == 1 and shop_b["total_events"] == 2
    assert shop_b["latency"]["sample"] == 0 and default["latency"]["sample"] == 1
    assert shop_b["oldest_pending"]["received_at"] is not None
    assert default["oldest_pending"]["received_at"] is None
    assert shop_b["throughput"]["total"] == 2
