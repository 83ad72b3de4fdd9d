"""What Redis knows about an event's jobs (one RQ job per attempt, deterministic ids)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from redis import RedisError
from rq.job import Job
from rq_scheduler import Scheduler

from . import queueing
from .models import WebhookEvent
from .timeutil import isoformat, to_naive_utc

logger = logging.getLogger(__name__)


def event_jobs(event: WebhookEvent) -> dict[str, Any]:
    """The RQ state of each attempt's job, the next one included.

    `jobs` lists the jobs Redis still has (finished ones expire after an hour);
    `error` is set instead when Redis cannot be reached.
    """
    ids = [queueing.job_id(event.id, number) for number in range(1, event.attempts + 2)]
    try:
        connection = queueing.get_redis()
        jobs = Job.fetch_many(ids, connection=connection)
        scheduled_at = [connection.zscore(Scheduler.scheduled_jobs_key, job_id) for job_id in ids]
        found = [_describe(job, at) for job, at in zip(jobs, scheduled_at, strict=True) if job]
    except RedisError as exc:
        logger.warning("event %s: job state unavailable: %s", event.id, exc)
        return {"jobs": [], "error": f"Redis unavailable: {type(exc).__name__}"}
    return {"jobs": found, "error": None}


def _describe(job: Job, scheduled_at: float | None) -> dict[str, Any]:
    result = job.latest_result()
    status = job.get_status(refresh=False)
    return {
        "id": job.id,
        "status": getattr(status, "value", status) or "unknown",
        "enqueued_at": _time(job.enqueued_at),
        "scheduled_for": (
            isoformat(datetime.fromtimestamp(scheduled_at, UTC).replace(tzinfo=None))
            if scheduled_at is not None
            else None
        ),
        "started_at": _time(job.started_at),
        "ended_at": _time(job.ended_at),
        "exc_info": result.exc_string if result and result.exc_string else None,
    }


def _time(value: datetime | None) -> str | None:
    return isoformat(to_naive_utc(value)) if value else None
