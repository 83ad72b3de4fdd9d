"""Census: the round trips one notification costs, counted rather than timed.

    python bench/census.py [--db sqlite,postgresql] [--events 50]

Runs in this process, on the service's real code (a Flask test client for
`POST /webhooks/mp`; RQ's SimpleWorker in burst mode for the jobs, as in
tests/conftest.py), against a fresh database, Redis db 14 and the sandbox, and
counts per notification: SQL statements by kind, COMMITs, connection checkouts,
Redis round trips (one per command or pipeline sent) and HTTP calls. The same
worker running no-op jobs gives RQ's own share. Noise-free: the figures that
explain the timings of ingest.py and processing.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections import Counter

import common
from common import (
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    comma_list,
    environment_note,
    log,
    post_json,
    table,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=50)
    add_common_arguments(parser, json_output=False)
    args = parser.parse_args(argv)
    kinds = comma_list(args.db)
    n = args.events

    rows = []
    with Session("census", args.redis_url, tree=args.tree) as session:
        note = environment_note()
        log(note)
        sandbox = session.sandbox()
        os.environ.update(
            app_env(
                session,
                "sqlite://",
                MP_API_BASE_URL=sandbox.url,
                GHL_API_BASE_URL=sandbox.url,
                SANDBOX_URL=sandbox.url,
                LOG_LEVEL="WARNING",
                GHL_RATE_LIMIT="off",
            )  # fmt: skip
        )
        import redis.connection
        import requests
        from rq import SimpleWorker
        from sqlalchemy import event

        from webhooks_app import create_app
        from webhooks_app.config import normalise_database_url
        from webhooks_app.extensions import db
        from webhooks_app.queueing import get_queue

        counts: Counter = Counter()
        original_send = redis.connection.AbstractConnection.send_packed_command
        original_request = requests.Session.request

        def counting_send(self, command, check_health=True):  # noqa: ANN001
            counts["redis round trips"] += 1
            return original_send(self, command, check_health)

        def counting_request(self, method, url, *a, **kw):  # noqa: ANN001
            counts[f"HTTP {method}"] += 1
            return original_request(self, method, url, *a, **kw)

        redis.connection.AbstractConnection.send_packed_command = counting_send
        requests.Session.request = counting_request

        for kind in kinds:
            url = session.database(kind)
            app = create_app(
                "development",
                {
                    "SQLALCHEMY_DATABASE_URI": normalise_database_url(url),
                    "MP_API_BASE_URL": sandbox.url,
                    "GHL_API_BASE_URL": sandbox.url,
                },
            )
            with app.app_context():
                engine = db.engine

                @event.listens_for(engine, "before_cursor_execute")
                def _statement(conn, cursor, statement, *rest):  # noqa: ANN001
                    counts["SQL " + statement.split(None, 1)[0].upper()] += 1

                @event.listens_for(engine, "commit")
                def _commit(conn):  # noqa: ANN001
                    # In autocommit each statement commits itself: no COMMIT is sent.
                    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                        counts["SQL transactions in autocommit (no COMMIT sent)"] += 1
                    else:
                        counts["SQL COMMIT (transactions)"] += 1

                @event.listens_for(engine, "checkout")
                def _checkout(*_a):  # noqa: ANN001
                    counts["connection checkouts"] += 1

                session.redis().flushdb()
                payments = [
                    str(p["id"])
                    for p in post_json(
                        sandbox.url + "/_sandbox/payments", [{"status": "approved"}] * n
                    )
                ]
                client = app.test_client()
                requests_ = RequestFactory(payments).make(n)
                db.session.remove()
                counts.clear()
                for r in requests_:
                    answer = client.post(
                        r.path,
                        data=r.body,
                        content_type="application/json",
                        headers={"x-request-id": r.request_id, "x-signature": r.signature},
                    )
                    assert answer.status_code == 200, answer.get_data(as_text=True)
                ingest = Counter(counts)
                queue = get_queue(app)
                db.session.remove()
                counts.clear()
                SimpleWorker([queue], connection=queue.connection).work(
                    burst=True, logging_level="WARNING"
                )
                db.session.remove()
                process = Counter(counts)
                for i in range(n):
                    queue.enqueue("noop_jobs.noop", i, job_id=f"noop-{uuid.uuid4().hex}")
                counts.clear()
                SimpleWorker([queue], connection=queue.connection).work(
                    burst=True, logging_level="WARNING"
                )
                noop = Counter(counts)
                statuses = common.sql_rows(
                    url, "SELECT status, count(*) FROM webhook_events GROUP BY 1"
                )
            keys = sorted(set(ingest) | set(process) | set(noop))
            for key in keys:
                rows.append(
                    (kind, key, ingest[key] / n, process[key] / n, noop[key] / n,
                     (process[key] - noop[key]) / n)
                )  # fmt: skip
            rows.append((kind, "event statuses after", str(statuses), "", "", ""))

    print(f"# Census: round trips per notification\n\n{note}\n")
    print(
        f"{n} signed notifications POSTed through the Flask test client, then processed by "
        "RQ's SimpleWorker in this process (sandbox answering at once, GHL_RATE_LIMIT=off); "
        f"then {n} no-op jobs through the same worker. Figures are per notification / job.\n"
    )
    print(
        table(
            (
                "db",
                "what",
                "per POST /webhooks/mp",
                "per processed event",
                "per no-op job",
                "event minus no-op",
            ),
            rows,
        )  # fmt: skip
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
