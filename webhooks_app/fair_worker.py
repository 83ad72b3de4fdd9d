"""Workers that serve the accounts in turn, so that one account's backlog delays nobody.

Each account's events go to a bulk queue of its own (`queueing.account_queue_name`).
RQ's round-robin strategy moves the queue a job came from to the end of the list, so the
next job comes from the next account that has one: with 5,000 events of account A queued,
account B's event waits for at most one of A's per worker, not for all of them
(bench/fairness.py). Two things are added to RQ's own:

- the priority queue (fraud alerts, claims) always stays first: it is never rotated;
- the list of queues follows the `accounts` table: an account created after the worker
  started is listened to within ACCOUNT_QUEUE_REFRESH seconds (the blocking wait is cut
  into slices that long).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from flask import Flask
from rq import Queue, Worker
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .queueing import all_queue_names, get_queue

logger = logging.getLogger(__name__)


class FairWorkerMixin:
    """Round robin over the accounts' queues behind a fixed priority queue; follows new
    accounts. Mixed into the configured worker class (`fair_worker_class`)."""

    app: Flask
    queues: list[Queue]
    _ordered_queues: list[Queue]
    _refreshed_at = 0.0

    def reorder_queues(self, reference_queue: Queue) -> None:
        """After a job from `reference_queue`: the accounts after it come first."""
        priority, rest = self._ordered_queues[0], self._ordered_queues[1:]
        if reference_queue in rest:
            position = rest.index(reference_queue)
            rest = rest[position + 1 :] + rest[: position + 1]
        self._ordered_queues = [priority, *rest]

    def refresh_queues(self) -> None:
        """Listen to every account's queue (new ones at the end of the turn). With the
        database unreachable, the queues stay as they are (the worker must not quit)."""
        try:
            ids = _account_ids(self.app)
        except SQLAlchemyError as exc:
            logger.warning("accounts unavailable (%s); listening on the same queues", exc)
            return
        wanted = all_queue_names(ids, self.app)
        if [queue.name for queue in self.queues] == wanted:
            return
        known = {queue.name: queue for queue in self.queues}
        connection = self.queues[0].connection
        queues = [known.get(name) or get_queue(self.app, connection, name) for name in wanted]
        added = [queue for queue in queues if queue.name not in known]
        # Keep the turn: the queues in their current order, then the new ones.
        kept = [queue for queue in self._ordered_queues if queue.name in set(wanted)]
        self.queues = queues
        self._ordered_queues = kept + added
        if added:
            logger.info("worker now also listens on %s", ", ".join(q.name for q in added))

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        """RQ's, in slices of ACCOUNT_QUEUE_REFRESH seconds, refreshing the queues between."""
        refresh = self.app.config["ACCOUNT_QUEUE_REFRESH"]
        started = time.monotonic()
        while True:
            if time.monotonic() - self._refreshed_at >= refresh:
                self.refresh_queues()
                self._refreshed_at = time.monotonic()
            if timeout is None:  # burst: one non-blocking look at every queue
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
            slice_ = max(1, math.ceil(refresh))
            if max_idle_time is not None:
                left = max_idle_time - (time.monotonic() - started)
                if left <= 0:
                    return None
                slice_ = max(1, min(slice_, math.ceil(left)))
            result = super().dequeue_job_and_maintain_ttl(timeout, slice_)  # type: ignore[misc]
            if result is not None:
                return result


def fair_worker_class(base: type[Worker]) -> type[Worker]:
    """`base` (SimpleWorker, Worker …) with the accounts served in turn."""
    return type(f"Fair{base.__name__}", (FairWorkerMixin, base), {})


def _account_ids(app: Flask) -> list[int]:
    with app.app_context():
        from .accounts import all_account_ids  # accounts imports the models

        try:
            return all_account_ids()
        finally:
            db.session.remove()


def make_worker(app: Flask, base: type[Worker], connection: Any, **options: Any) -> Worker:
    """A fair worker of class `base` on every account's queue, for `app` (the default
    account's alone while the database is unreachable: the others' join at a refresh)."""
    try:
        ids = _account_ids(app)
    except SQLAlchemyError as exc:
        logger.warning("accounts unavailable (%s); the default account's queue only", exc)
        ids = []
    queues = [get_queue(app, connection, name) for name in all_queue_names(ids, app)]
    worker = fair_worker_class(base)(queues, connection=connection, **options)
    worker.app = app
    worker._refreshed_at = time.monotonic()
    return worker
