"""Redis, the RQ queue and rq-scheduler: how an event's attempts get to a worker.

Redis only carries work; the `webhook_events` row is the source of truth. If
Redis is down when an event is stored or a retry is scheduled, the event stays
`pending` with its due time in `next_retry_at` and is picked up later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq_scheduler import Scheduler

from . import tracing

logger = logging.getLogger(__name__)

# The job is the sanitising wrapper below, not processing.process_event itself.
PROCESS_EVENT_JOB = "webhooks_app.queueing.run_event_job"


class EventJobFailed(Exception):
    """An attempt's job crashed; the message names the event and the error type only."""


def run_event_job(event_id: int) -> str:
    """RQ job: processing.process_event, with any escaping error's text kept out of Redis.

    process_event records every pipeline failure itself; what still escapes is a
    failure of that bookkeeping (the database gone mid-attempt), and its message can
    quote the SQL parameters being written: an error text from an API, a payer's
    e-mail. RQ stores the traceback as the job's `exc_info`, which rq-dashboard 0.9
    prints unescaped (Parallels/rq-dashboard#526), so the whole error goes to the
    log and the job fails with a message built from the event id and a class name.
    """
    from .processing import process_event  # processing imports this module

    try:
        return process_event(event_id)
    except Exception as exc:
        logger.exception("job for event %s crashed", event_id)
        raise EventJobFailed(
            f"event {event_id}: {type(exc).__name__} (the service log has the details)"
        ) from None


def make_redis(url: str, socket_timeout: float | None) -> Redis:
    """A Redis client; with a timeout it fails fast instead of retrying with backoff."""
    if socket_timeout is None:
        return Redis.from_url(url)
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
    )


def init_app(app: Flask) -> None:
    """Create the app's Redis client (short timeouts: it serves the request path)."""
    app.extensions["redis"] = make_redis(
        app.config["REDIS_URL"], app.config["REDIS_SOCKET_TIMEOUT"]
    )


def get_redis(app: Flask | None = None) -> Redis:
    return (app or current_app).extensions["redis"]


def get_queue(app: Flask | None = None, connection: Redis | None = None) -> Queue:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return Queue(
        app.config["RQ_QUEUE_NAME"],
        connection=connection or get_redis(app),
        default_timeout=app.config["RQ_JOB_TIMEOUT"],
    )


def get_scheduler(app: Flask | None = None, connection: Redis | None = None) -> Scheduler:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return Scheduler(
        queue=get_queue(app, connection),
        connection=connection or get_redis(app),
        interval=app.config["SCHEDULER_INTERVAL"],
    )


def job_id(event_id: int, attempt: int, suffix: str = "") -> str:
    """A deterministic RQ job id for one attempt of one event."""
    return f"event-{event_id}-attempt-{attempt}{suffix}"


def _job_options(event_id: int, attempt: int, suffix: str = "") -> dict[str, Any]:
    return {
        "job_id": job_id(event_id, attempt, suffix),
        "description": f"process webhook event {event_id} (attempt {attempt})",
        "result_ttl": 3600,
    }


def enqueue_events(
    attempts: Sequence[tuple[int, int]],
    suffix: str = "",
    traces: Mapping[int, Mapping[str, str]] | None = None,
) -> list[str]:
    """Put attempts `(event_id, attempt)` on the queue now, in one Redis round trip.

    Each job's meta carries its event's trace context: `traces[event_id]`, or the
    current one (see tracing.py). Raises redis.RedisError when Redis is unreachable
    (then none is queued).
    """
    queue = get_queue()
    current = tracing.current_carrier()
    jobs = [
        Queue.prepare_data(
            PROCESS_EVENT_JOB,
            args=(event_id,),
            timeout=current_app.config["RQ_JOB_TIMEOUT"],
            meta=tracing.job_meta((traces or {}).get(event_id, current)),
            **_job_options(event_id, attempt, suffix),
        )
        for event_id, attempt in attempts
    ]
    with queue.connection.pipeline() as pipeline:
        queue.enqueue_many(jobs, pipeline=pipeline)
        pipeline.execute()
    return [job.job_id for job in jobs]


def enqueue_event(event_id: int, attempt: int, suffix: str = "") -> str:
    """Put an attempt on the queue now. Raises redis.RedisError when Redis is unreachable."""
    return enqueue_events([(event_id, attempt)], suffix)[0]


def schedule_event(event_id: int, attempt: int, at: datetime, suffix: str = "") -> str:
    """Have rq-scheduler enqueue an attempt at `at` (naive UTC). Raises redis.RedisError."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    options = _job_options(event_id, attempt, suffix)
    options["job_description"] = options.pop("description")
    options["job_result_ttl"] = options.pop("result_ttl")
    get_scheduler(app).enqueue_at(
        at,
        PROCESS_EVENT_JOB,
        event_id,
        timeout=app.config["RQ_JOB_TIMEOUT"],
        queue_name=app.config["RQ_QUEUE_NAME"],
        # The attempt continues the trace of the one scheduling it.
        meta=tracing.job_meta(tracing.current_carrier()),
        **options,
    )
    return options["job_id"]
