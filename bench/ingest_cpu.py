"""Ingestion CPU per request, in-process: the service's own cost, without gunicorn's.

    python bench/ingest_cpu.py [--db sqlite,postgresql] [--threads 16] [--requests 4000]

`ingest.py` measures throughput under gunicorn, where thread scheduling and the
machine's other load move the figures by ±15%. This script measures what our
code costs: `--threads` threads (the Procfile's WEB_THREADS) call the WSGI app
directly with signed, unique notifications, as gthread's pool threads would,
and the CPU of this whole process (`time.process_time`: the request threads,
the log writer thread, the driver) is divided by the requests answered. The
ceiling is bench/bare_app.py called the same way: with no HTTP server it is far
below gunicorn's ceiling, so compare differences, not ratios. Logs go to a file
and a stdout file, as under gunicorn; the app config is the development one,
Redis is real (db 14 by default), the database fresh and migrated.

Rounds alternate ceiling and service; the table gives each round and the
median. Run it for two trees (`--tree`) back to back for a before/after pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import (
    QUEUE,
    SECRET,
    RequestFactory,
    Session,
    add_common_arguments,
    comma_list,
    environment_note,
    log,
    table,
)

WsgiApp = Callable[..., Any]


def environs(count: int, factory: RequestFactory) -> list[dict[str, Any]]:
    """WSGI environs of `count` signed, unique notifications, built before timing."""
    from werkzeug.test import EnvironBuilder

    out = []
    for request in factory.make(count):
        path, query = request.path.split("?", 1)
        builder = EnvironBuilder(
            path=path,
            query_string=query,
            method="POST",
            data=request.body,
            headers={
                "Content-Type": "application/json",
                "x-request-id": request.request_id,
                "x-signature": request.signature,
            },
        )
        out.append(builder.get_environ())
    return out


def call_in_threads(app: WsgiApp, batch: Sequence[dict[str, Any]], threads: int) -> int:
    """Each thread answers its share of `batch`; returns how many were not 200."""
    failures: list[str] = []

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> None:
        if not status.startswith("200"):
            failures.append(status)

    def work(share: Sequence[dict[str, Any]]) -> None:
        for environ in share:
            body = app(environ, start_response)
            b"".join(body)
            if hasattr(body, "close"):
                body.close()

    workers = [threading.Thread(target=work, args=(batch[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(failures)


def measure(
    app: WsgiApp, batch: Sequence[dict[str, Any]], threads: int, inserts: list[int] | None
) -> dict[str, float]:
    if inserts is not None:
        inserts.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    failures = call_in_threads(app, batch, threads)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(batch)
    return {
        "cpu_ms": cpu / n * 1000,
        "wall_ms": wall / n * 1000,
        "failures": failures,
        "batch": n / len(inserts) if inserts else float("nan"),
    }


def service_app(session: Session, kind: str, stdout_path: Any) -> tuple[WsgiApp, list[int]]:
    """The service's app on a fresh database; also a list that counts its event INSERTs."""
    from sqlalchemy import event

    from webhooks_app import create_app
    from webhooks_app.extensions import db

    url = session.database(kind, "cpu")
    # The stdout handler keeps the stream it is given: a file, as gunicorn's would be a pipe.
    with contextlib.redirect_stdout(open(stdout_path, "a")):  # noqa: SIM115 - lives with the app
        app = create_app(
            "development",
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": session.redis_url,
                "MP_WEBHOOK_SECRET": SECRET,
                "RQ_QUEUE_NAME": QUEUE,
                "LOG_FILE": str(session.tmp / f"webhook-{kind}.log"),
                "CATCH_UP_INTERVAL": 0,
            },
        )
    inserts: list[int] = []
    with app.app_context():

        @event.listens_for(db.engine, "before_cursor_execute")
        def count_inserts(_conn, _cursor, statement, *_args) -> None:
            if statement.startswith("INSERT INTO webhook_events"):
                inserts.append(1)

    return app, inserts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000, help="per round and target")
    parser.add_argument("--rounds", type=int, default=3)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    kinds = comma_list(args.db)

    with Session("ingestcpu", args.redis_url, tree=args.tree) as session:
        note = environment_note()
        log(note)
        import bare_app

        factory = RequestFactory()
        ceiling = bare_app.app.wsgi_app
        rows = []
        summary = []
        for kind in kinds:
            app, inserts = service_app(session, kind, session.tmp / "stdout.log")
            service = app.wsgi_app
            # Warm up both: first connections, compiled statements, imports.
            call_in_threads(ceiling, environs(300, factory), args.threads)
            call_in_threads(service, environs(300, factory), args.threads)
            results: dict[str, list[dict[str, float]]] = {"ceiling": [], "service": []}
            for round_number in range(1, args.rounds + 1):
                for target, wsgi, counted in (
                    ("ceiling", ceiling, None),
                    ("service", service, inserts),
                ):
                    log(f"{kind}: {target}, round {round_number}")
                    result = measure(wsgi, environs(args.requests, factory), args.threads, counted)
                    results[target].append(result)
                    rows.append(
                        (
                            kind,
                            target,
                            round_number,
                            f"{result['cpu_ms']:.3f}",
                            f"{result['wall_ms']:.3f}",
                            f"{result['batch']:.1f}" if counted is not None else "-",
                            result["failures"],
                        )
                    )
                session.redis().flushdb()
            ceiling_cpu = statistics.median(r["cpu_ms"] for r in results["ceiling"])
            service_cpu = statistics.median(r["cpu_ms"] for r in results["service"])
            summary.append(
                (
                    kind,
                    f"{ceiling_cpu:.3f}",
                    f"{service_cpu:.3f}",
                    f"{service_cpu - ceiling_cpu:.3f}",
                    f"{statistics.median(r['batch'] for r in results['service']):.1f}",
                    sum(r["failures"] for r in results["service"]),
                )
            )
            with app.app_context():
                from webhooks_app.extensions import db

                db.engine.dispose()

    print(f"# Ingestion CPU per request, in-process ({args.threads} threads)\n\n{note}\n")
    print(
        table(
            ("db", "target", "round", "cpu ms/req", "wall ms/req", "rows per INSERT", "non-200"),
            rows,
        )
    )
    print(
        table(
            (
                "db",
                "ceiling cpu ms/req (median)",
                "service cpu ms/req (median)",
                "service - ceiling",
                "rows per INSERT",
                "non-200",
            ),
            summary,
        )
    )
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rounds": rows, "summary": summary}))
    failed = sum(int(row[-1]) for row in summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
