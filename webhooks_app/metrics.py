"""Prometheus metrics, in multiprocess mode (gunicorn workers and RQ workers write to one dir).

Counters and histograms are recorded where things happen; the backlog gauges
(queue depth, scheduled retries, oldest pending age) are read from Redis and the
database at scrape time, so they are right whichever process is scraped.
`PROMETHEUS_MULTIPROC_DIR` must be set before prometheus_client is imported:
this module sets it from the configuration when the environment has none.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .config import METRICS_DIR

# prometheus_client picks its storage when imported: the directory must exist first.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", METRICS_DIR)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

logger = logging.getLogger(__name__)

WEBHOOKS_RECEIVED = Counter(
    "webhooks_received_total",
    "Notifications received at /webhooks/mp, by type and outcome",
    ["type", "outcome"],  # outcome: accepted, duplicate, rejected
)
WEBHOOKS_REJECTED = Counter(
    "webhooks_rejected_total",
    "Notifications refused, by reason",
    ["reason"],  # invalid, signature, ipn_refused, too_large, database_unavailable
)
WEBHOOKS_SIGNATURE_VERIFIED = Counter(
    "webhooks_signature_verified_total",
    "Signed notifications accepted, by the index of the MP_WEBHOOK_SECRET entry that matched "
    "(0 = the first, newest): once an old secret's count stops growing, it can be dropped",
    ["secret"],
)
EVENTS_FINISHED = Counter(
    "webhook_events_finished_total", "Events that reached a final status", ["status"]
)
ATTEMPTS = Counter("webhook_attempts_total", "Processing attempts, by outcome", ["outcome"])
PROCESSING_LATENCY = Histogram(
    "webhook_processing_latency_seconds",
    "From receipt to the final status",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, float("inf")),
)
STORE_BATCH_SIZE = Histogram(
    "webhook_store_batch_size",
    "Notifications stored per transaction (group commit of concurrent requests)",
    buckets=(1, 2, 4, 8, 16, 32, 64, float("inf")),
)
API_CALLS = Histogram(
    "api_call_duration_seconds",
    "MercadoPago and GoHighLevel calls, by service and HTTP status (0 = no response)",
    ["service", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, float("inf")),
)

LOGIN_FAILURES = Counter(
    "admin_login_failures_total",
    "Refused Basic logins to /admin and /rq, by reason",
    ["reason"],  # invalid (wrong credentials), throttled (too many failures: 429)
)
BREAKER_OPENINGS = Counter(
    "webhooks_breaker_openings_total",
    "Times an upstream's circuit breaker opened (breaker.py)",
    ["upstream"],
)


# Label values must stay few: a type label is a topic some handler processes, one of
# these, or "other".
LABELLED_TYPES = frozenset({"payment", "merchant_order", "chargebacks", "subscription_preapproval"})


@functools.cache
def known_types() -> frozenset[str]:
    """The event types with a label of their own: `LABELLED_TYPES` and `handlers.TOPICS`."""
    # Imported here, at the first call: the handlers import this module.
    from .handlers import TOPICS

    return LABELLED_TYPES | TOPICS


def type_label(event_type: str) -> str:
    return event_type if event_type in known_types() else "other"


def count_final(status: str, received_at: datetime | None, processed_at: datetime | None) -> None:
    """Metrics for an event that just reached its final status."""
    EVENTS_FINISHED.labels(status).inc()
    if processed_at and received_at:
        PROCESSING_LATENCY.observe((processed_at - received_at).total_seconds())


@contextmanager
def observe_api_call(service: str) -> Iterator[None]:
    """Time one API call; its status comes from the response or the typed error.

    The outcome also goes to the upstream's circuit breaker (breaker.record_call).
    """
    from .breaker import record_call  # the app's modules load after this one

    started = time.perf_counter()
    status = "200"
    try:
        yield
    except Exception as exc:
        status = str(getattr(exc, "status_code", None) or 0)
        record_call(service, exc)
        raise
    else:
        record_call(service, None)
    finally:
        API_CALLS.labels(service, status).observe(time.perf_counter() - started)


class BacklogCollector:
    """Queue depth, scheduled retries and the oldest pending event's age, read at scrape time."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # The app's own modules, imported at first scrape (this module loads before them).
        from .stats import event_counts, oldest_pending, queue_depth

        with self.app.app_context():
            queue = queue_depth()
            figures = {
                "queue_depth": queue["queued"],
                "scheduled_retries": queue["scheduled"],
                "pending_events": event_counts()["pending"],
                "oldest_pending_age_seconds": oldest_pending()["age_seconds"] or 0.0,
            }
        for name, help_text in (
            ("queue_depth", "Jobs waiting in the RQ queue"),
            ("scheduled_retries", "Attempts waiting in rq-scheduler"),
            ("pending_events", "Events pending in the database"),
            ("oldest_pending_age_seconds", "Age of the oldest pending event"),
        ):
            if figures[name] is not None:  # None: Redis is down; the gauge is left out
                yield GaugeMetricFamily(f"webhooks_{name}", help_text, value=figures[name])


def render(app) -> tuple[bytes, str]:
    """The metrics of every process, plus the backlog gauges."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(BacklogCollector(app))
    from .breaker import BreakerCollector

    registry.register(BreakerCollector(app))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: forget a dead worker's live gauges."""
    multiprocess.mark_process_dead(pid)
