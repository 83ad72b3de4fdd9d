"""rq-scheduler for delayed retries: `python scheduler.py [--burst]`.

Moves each scheduled attempt to the queue when it is due, polling every
SCHEDULER_INTERVAL seconds. If Redis goes away the loop waits and starts again
instead of dying: the schedule lives in Redis, the truth in the database.
"""

from __future__ import annotations

import argparse
import logging
import time

from redis import RedisError

from webhooks_app import create_app
from webhooks_app.queueing import get_scheduler, make_redis

logger = logging.getLogger("webhooks_app.scheduler")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="Move what is due once, then quit.")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        connection = make_redis(app.config["REDIS_URL"], 10.0)
        backoff = 1.0
        while True:
            try:
                logger.info("scheduler polling every %ss", app.config["SCHEDULER_INTERVAL"])
                get_scheduler(app, connection).run(burst=args.burst)
                return
            except RedisError as exc:
                logger.warning("Redis unavailable (%s); scheduler retrying in %.0fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)


if __name__ == "__main__":
    main()
