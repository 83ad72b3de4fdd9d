"""The loop `scheduler.py` runs: rq-scheduler's moves, the reconciler, catch-up, retention.

It is a plain loop in its own process, not a periodic job stored in Redis, so a
Redis flush or outage cannot make it forget; each task's failure is logged and
the loop goes on.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from redis import Redis

from .alerts import check_and_alert
from .catchup import catch_up_accounts
from .extensions import db
from .queueing import get_scheduler
from .reconciler import reconcile
from .retention import next_round_in, purge_round

logger = logging.getLogger(__name__)


@dataclass
class Task:
    """A function run every `interval` seconds."""

    name: str
    interval: float
    run: Callable[[], object]
    next_run: float = 0.0
    # Seconds until the next run, from this run's result and the interval (default: the
    # interval): retention comes back sooner while a backlog remains.
    after: Callable[[object, float], float] | None = None

    def delay(self, result: object) -> float:
        return self.interval if self.after is None else self.after(result, self.interval)


def move_due_jobs(app: Flask, connection: Redis) -> Callable[[], object]:
    """rq-scheduler's work: move due scheduled attempts to the queue (one scheduler at a time)."""
    scheduler = get_scheduler(app, connection)

    def run() -> object:
        if not scheduler.acquire_lock():
            return None
        try:
            return scheduler.enqueue_jobs()
        finally:
            scheduler.remove_lock()

    return run


def build_tasks(app: Flask, connection: Redis) -> list[Task]:
    config = app.config
    tasks = [
        Task("rq-scheduler", config["SCHEDULER_INTERVAL"], move_due_jobs(app, connection)),
        Task("reconciler", config["RECONCILE_INTERVAL"], reconcile),
    ]
    # Catch-up and retention look for work at every run (an account given its first token
    # or a retention of its own counts at once); with none, a run does nothing.
    if config["CATCH_UP_INTERVAL"] > 0:
        tasks.append(Task("catch-up", config["CATCH_UP_INTERVAL"], catch_up_accounts))
    tasks.append(Task("retention", config["RETENTION_INTERVAL"], purge_round, after=next_round_in))
    if config.get("ALERT_WEBHOOK_URL") or config.get("ALERT_EMAIL_TO"):
        tasks.append(Task("alerts", config["ALERT_INTERVAL"], check_and_alert))
    return tasks


def run_forever(app: Flask, connection: Redis, *, once: bool = False) -> None:
    """Run every task when due until SIGTERM/SIGINT (or one round with `once`)."""
    tasks = build_tasks(app, connection)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        logger.info("scheduler: signal %s, stopping after this round", signum)
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "scheduler running: %s", ", ".join(f"{t.name} every {t.interval:g}s" for t in tasks)
    )
    while not stopping:
        for task in tasks:
            if time.monotonic() < task.next_run:
                continue
            delay = task.interval
            try:
                delay = task.delay(task.run())
            except Exception:  # noqa: BLE001 - one task's failure must not stop the loop
                logger.exception(
                    "scheduler: %s failed; retrying in %.0fs", task.name, task.interval
                )
                db.session.rollback()
            finally:
                db.session.remove()
            task.next_run = time.monotonic() + delay
        if once:
            return
        wait = min(task.next_run for task in tasks) - time.monotonic()
        time.sleep(max(0.05, min(wait, 1.0)))
