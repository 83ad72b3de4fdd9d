"""RQ worker for webhook events: `python worker.py [--burst]`.

The worker runs jobs inside one pushed Flask app context, so jobs can use
Flask-SQLAlchemy. The worker class comes from RQ_WORKER_CLASS (default
SimpleWorker: no fork per job; see README). SIGTERM is a warm shutdown: the
current attempt finishes first; a second SIGTERM stops at once and hands the
event back to `pending`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from redis import RedisError
from werkzeug.utils import import_string

from webhooks_app import create_app
from webhooks_app.extensions import db
from webhooks_app.fair_worker import make_worker
from webhooks_app.queueing import make_redis

logger = logging.getLogger("webhooks_app.worker")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="Quit when the queue is empty.")
    parser.add_argument("--name", help="Worker name (default: RQ's).")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        engine = db.engine
        # A forking worker class must not share the parent's database connections.
        os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
        # No short socket timeout here: RQ blocks on the queue for long polls.
        connection = make_redis(app.config["REDIS_URL"], None)
        worker_class = import_string(app.config["RQ_WORKER_CLASS"])
        while True:
            # Every account's queue, served in turn, behind the priority queue (fair_worker).
            worker = make_worker(app, worker_class, connection, name=args.name)
            logger.info(
                "worker %s (%s) listening on %s",
                worker.name,
                worker_class.__name__,
                ", ".join(queue.name for queue in worker.queues),
            )
            try:
                worker.work(burst=args.burst, logging_level=app.config["LOG_LEVEL"])
                return
            except RedisError as exc:
                # RQ retries a lost connection while waiting for jobs, but not everywhere
                # else; start over rather than exit (the events wait in the database).
                logger.warning("worker lost Redis (%s); starting again in 2s", exc)
                time.sleep(2)


if __name__ == "__main__":
    main()
