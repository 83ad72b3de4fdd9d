"""Where one worker's time per event goes: waiting on the database, the APIs, Redis, or CPU.

    python bench/processing_waits.py [--db sqlite,postgresql] [--events 300] [--rounds 2]

`processing.py` gives the goal's ratio (events/s of one worker process against
no-op jobs). This diagnostic says what fills the gap. RQ's SimpleWorker runs
in this process (burst mode, the service's app context, RQ logging at the
app's level, as `worker.py` does), first on `--events` stored events about
distinct sandbox payments (GET payment, upsert, GHL upsert contact, add tag),
then on three times as many no-op jobs. Wall and CPU time per job are divided
into time spent:

- in the database driver's calls (execute, executemany, commit, rollback, the
  pool's ping), for PostgreSQL mostly waiting on the server, for SQLite the
  engine's own work;
- waiting for the sandbox's answer (`http.client` reading the status line and
  headers: the sandbox's own time plus loopback), and in `request_json` as a
  whole (that wait plus `requests`' CPU);
- reading Redis replies (RQ's own commands and ours: payment lock, limiter).

The timers wrap those library functions in this process only (a few
microseconds per call). The sandbox answers at once and GHL_RATE_LIMIT is off,
as in `processing.py`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import http.client
import json
import sys
import time
from typing import Any

from common import (
    QUEUE,
    Session,
    add_common_arguments,
    comma_list,
    environment_note,
    log,
    store_payment_events,
    table,
)

# What the timers add up, per phase: seconds by label.
_spent: collections.Counter[str] = collections.Counter()
# The labels the timers use, in the order of the table's columns.
_TIMED = ("database driver", "sandbox answer", "request_json", "redis replies")


def _time_calls(owner: Any, name: str, label: str) -> None:
    """Wrap `owner.name` so that the time spent in it is added to `_spent[label]`."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _spent[label] += time.perf_counter() - started

    setattr(owner, name, timed)


def _instrument_libraries() -> None:
    """Time the HTTP and Redis calls of every app in this process (once: wrapping a
    wrapper would count its time twice)."""
    import redis.connection

    from webhooks_app.services.http import ApiHttpClient

    _time_calls(http.client.HTTPResponse, "begin", "sandbox answer")
    _time_calls(ApiHttpClient, "request_json", "request_json")
    _time_calls(redis.connection.AbstractConnection, "read_response", "redis replies")


def _instrument_database(dialect: Any) -> None:
    """Time the driver calls of one engine (each engine has its own dialect)."""
    for name in ("do_execute", "do_executemany", "do_commit", "do_rollback", "do_ping"):
        _time_calls(dialect, name, "database driver")


def _work(app: Any, n: int, rq_log: Any) -> dict[str, float]:
    """Run the queue empty with a SimpleWorker; times per job, in ms."""
    from rq import SimpleWorker

    from webhooks_app.queueing import get_queue, make_redis

    with app.app_context():
        connection = make_redis(app.config["REDIS_URL"], None)
        queue = get_queue(app, connection)
        if len(queue) != n:
            raise RuntimeError(f"{len(queue)} jobs queued, expected {n}")
        worker = SimpleWorker([queue], connection=connection)
        _spent.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        with contextlib.redirect_stderr(rq_log):
            worker.work(burst=True, logging_level=app.config["LOG_LEVEL"])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        failed = queue.failed_job_registry.count
    if failed:
        raise RuntimeError(f"{failed} jobs failed")
    result = {"jobs/s": n / wall, "wall ms": 1000 * wall / n, "cpu ms": 1000 * cpu / n}
    for label in _TIMED:
        result[label] = 1000 * _spent[label] / n
    return result


def _enqueue_noops(app: Any, n: int) -> None:
    from webhooks_app.queueing import get_queue

    with app.app_context():
        queue = get_queue(app)
        with queue.connection.pipeline() as pipe:
            for i in range(n):
                queue.enqueue("noop_jobs.noop", i, result_ttl=3600, pipeline=pipe)
            pipe.execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=300, help="events per round")
    parser.add_argument("--rounds", type=int, default=2)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    kinds = comma_list(args.db)

    rows = []
    with (
        Session("procwaits", args.redis_url, tree=args.tree) as session,
        contextlib.ExitStack() as stack,
    ):
        note = environment_note()
        log(note)
        sandbox = session.sandbox()
        from webhooks_app import create_app
        from webhooks_app.extensions import db

        _instrument_libraries()
        # RQ's worker logs to stderr (a pipe under honcho or Heroku); here, to a file.
        rq_log = stack.enter_context(open(session.tmp / "rq.log", "a"))
        for kind in kinds:
            app = create_app(
                "development",
                {
                    "SQLALCHEMY_DATABASE_URI": session.database(kind),
                    "REDIS_URL": session.redis_url,
                    "RQ_QUEUE_NAME": QUEUE,
                    "MP_API_BASE_URL": sandbox.url,
                    "GHL_API_BASE_URL": sandbox.url,
                    "GHL_RATE_LIMIT": "off",
                    "LOG_FILE": str(session.tmp / f"worker-{kind}.log"),
                    "CATCH_UP_INTERVAL": 0,
                },
            )
            with app.app_context():
                _instrument_database(db.engine.dialect)
            # Warm up: connections, compiled statements, imports.
            store_payment_events(app, sandbox.url, 30)
            _work(app, 30, rq_log)
            for round_number in range(1, args.rounds + 1):
                log(f"{kind}: round {round_number}, {args.events} events")
                store_payment_events(app, sandbox.url, args.events)
                event = _work(app, args.events, rq_log)
                log(f"{kind}: round {round_number}, {3 * args.events} no-op jobs")
                _enqueue_noops(app, 3 * args.events)
                noop = _work(app, 3 * args.events, rq_log)
                ratio = f"{event['jobs/s'] / noop['jobs/s']:.2f}"
                for label, figures, shown_ratio in (
                    ("pipeline", event, ratio),
                    ("no-op job", noop, ""),
                ):
                    rows.append(
                        (
                            kind,
                            round_number,
                            label,
                            f"{figures['jobs/s']:.1f}",
                            shown_ratio,
                            *(f"{figures[key]:.2f}" for key in ("wall ms", "cpu ms", *_TIMED)),
                        )
                    )
            with app.app_context():
                db.engine.dispose()

    headers = (
        "db",
        "round",
        "jobs",
        "jobs/s",
        "x no-op",
        "wall ms/job",
        "cpu ms/job",
        "in db driver ms",
        "waiting for sandbox ms",
        "in request_json ms",
        "reading redis ms",
    )
    print(f"# Where a worker's time per job goes (SimpleWorker, in-process)\n\n{note}\n")
    print(table(headers, rows))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "headers": headers, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
