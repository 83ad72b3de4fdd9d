"""The scheduler process: `python scheduler.py [--once]`.

Every SCHEDULER_INTERVAL seconds it moves due retries from rq-scheduler's
schedule to the queue; every RECONCILE_INTERVAL seconds it runs the reconciler
(expired leases, due events missing from Redis); every CATCH_UP_INTERVAL seconds
it asks MercadoPago for payments that changed (when MP_ACCESS_TOKEN is set).
It survives Redis and the database going away: each round's failure is logged
and the loop goes on. Run exactly one (running two is safe, just wasteful).
"""

from __future__ import annotations

import argparse

from webhooks_app import create_app
from webhooks_app.periodic import run_forever
from webhooks_app.queueing import make_redis


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="Run every task once, then quit.")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        # Timeouts: a Redis that stops answering must not hang the loop.
        connection = make_redis(app.config["REDIS_URL"], 10.0)
        run_forever(app, connection, once=args.once)


if __name__ == "__main__":
    main()
