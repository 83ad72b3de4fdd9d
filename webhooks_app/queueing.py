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


# The priority queue's name is the bulk queue's with this suffix (`webhooks-priority`).
PRIORITY_SUFFIX = "-priority"
# Every account but the default one has a bulk queue of its own (`webhooks-account-7`): a
# worker serves them in turn (`fair_worker`), so a backlog of one account never holds up
# another's. The default account's is RQ_QUEUE_NAME itself, as before accounts.
ACCOUNT_QUEUE_INFIX = "-account-"
DEFAULT_ACCOUNT_ID = 1


def queue_names(app: Flask | None = None) -> tuple[str, str]:
    """(priority queue, the default account's bulk queue)."""
    name = (app or current_app).config["RQ_QUEUE_NAME"]
    return f"{name}{PRIORITY_SUFFIX}", name


def account_queue_name(account_id: int, app: Flask | None = None) -> str:
    """The bulk queue of an account's events."""
    name = (app or current_app).config["RQ_QUEUE_NAME"]
    return name if account_id == DEFAULT_ACCOUNT_ID else f"{name}{ACCOUNT_QUEUE_INFIX}{account_id}"


def all_queue_names(account_ids: Sequence[int], app: Flask | None = None) -> list[str]:
    """What a worker listens to: the priority queue, then every account's bulk queue."""
    priority, _bulk = queue_names(app)
    ids = sorted({DEFAULT_ACCOUNT_ID, *account_ids})
    return [priority, *(account_queue_name(account_id, app) for account_id in ids)]


def is_priority(event_type: str | None) -> bool:
    """Whether events of this type go to the priority queue (their handler's `priority`)."""
    # Imported here: the handlers import modules that import this one.
    from .handlers import PRIORITY_TOPICS

    return event_type in PRIORITY_TOPICS


def queue_name_for(
    event_type: str | None, app: Flask | None = None, account_id: int = DEFAULT_ACCOUNT_ID
) -> str:
    """The queue an event of this type and account is put on."""
    if is_priority(event_type):
        return queue_names(app)[0]
    return account_queue_name(account_id, app)


def get_queue(
    app: Flask | None = None, connection: Redis | None = None, name: str | None = None
) -> Queue:
    """The default account's bulk queue (RQ_QUEUE_NAME), or the queue `name`."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return Queue(
        name or app.config["RQ_QUEUE_NAME"],
        connection=connection or get_redis(app),
        default_timeout=app.config["RQ_JOB_TIMEOUT"],
    )


def get_queues(
    app: Flask | None = None,
    connection: Redis | None = None,
    account_ids: Sequence[int] = (),
) -> list[Queue]:
    """The priority queue, then the accounts' bulk queues: what a worker listens to."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return [get_queue(app, connection, name) for name in all_queue_names(account_ids, app)]


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
    types: Mapping[int, str] | None = None,
    accounts: Mapping[int, int] | None = None,
) -> list[str]:
    """Put attempts `(event_id, attempt)` on the queue now, in one Redis round trip.

    `types[event_id]` (the event's type) and `accounts[event_id]` (its account, default 1)
    pick the queue: the priority queue for a priority topic (fraud alerts, claims), else
    the account's bulk queue.

    Each job's meta carries its event's trace context: `traces[event_id]`, or the
    current one (see tracing.py). Raises redis.RedisError when Redis is unreachable
    (then none is queued).
    """
    current = tracing.current_carrier()
    types, accounts = types or {}, accounts or {}
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
    by_queue: dict[str, list[Any]] = {}
    for (event_id, _attempt), job in zip(attempts, jobs, strict=True):
        name = queue_name_for(
            types.get(event_id), account_id=accounts.get(event_id, DEFAULT_ACCOUNT_ID)
        )
        by_queue.setdefault(name, []).append(job)
    with get_redis().pipeline() as pipeline:
        for name, queued in by_queue.items():
            get_queue(name=name).enqueue_many(queued, pipeline=pipeline)
        pipeline.execute()
    return [job.job_id for job in jobs]


def enqueue_event(
    event_id: int,
    attempt: int,
    suffix: str = "",
    event_type: str | None = None,
    account_id: int = DEFAULT_ACCOUNT_ID,
) -> str:
    """Put an attempt on its type's and account's queue now. Raises redis.RedisError when
    Redis is unreachable."""
    types = {event_id: event_type} if event_type else None
    return enqueue_events(
        [(event_id, attempt)], suffix, types=types, accounts={event_id: account_id}
    )[0]


def schedule_event(
    event_id: int,
    attempt: int,
    at: datetime,
    suffix: str = "",
    event_type: str | None = None,
    account_id: int = DEFAULT_ACCOUNT_ID,
) -> str:
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
        queue_name=queue_name_for(event_type, app, account_id),
        # The attempt continues the trace of the one scheduling it.
        meta=tracing.job_meta(tracing.current_carrier()),
        **options,
    )
    return options["job_id"]
