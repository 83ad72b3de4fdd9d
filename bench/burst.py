"""Burst drain: N notifications at once, slow APIs, GHL's rate limit; and peak memory.

    python bench/burst.py [--events 5000] [--workers 1,2,4] [--limit 100/10] [--check]

For each worker count: a fresh database, the sandbox reset (latency
`--latency` on both APIs, GoHighLevel limited to `--limit` per location),
`--events` sandbox payments (approved, with a payer e-mail), and the service as
deployed: gunicorn (Procfile settings), `scheduler.py` and N `worker.py`
(RQ_WORKER_CLASS default, SimpleWorker). Then every notification is POSTed at
once (32 connections) and the run waits until no event is pending or processing
(or `--timeout`). Reported: time to drain, events/s against the two bounds
(N workers x the API latency; the GHL limit / 2 GHL calls per event), the GHL
calls and 429s the sandbox saw, attempts made, the events' final statuses, CPU
used, and the peak RSS (VmHWM) of the web workers, RQ workers and scheduler.

`--app-rate-limit` sets the service's GHL_RATE_LIMIT: `same` (the default: the
sandbox's limit, as configured in production), `off` (no shared limiter: the
baseline before it), or N/SECONDS. The real limit is 100/10: 5,000 events need
>= 10,000 GHL calls, i.e. >= 1,000 s; `--limit 20/1 --events 500` runs in
about a minute per worker count.

Goals (the issue's): zero events failed, drain bound by the rate limit (x bound
close to 1 once enough workers), peak RSS under 150 MB per process.
`--check` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from datetime import UTC, datetime

import common
from common import (
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    environment_note,
    log,
    memory_mb,
    post_json,
    run_asyncio_load,
    sql_rows,
    table,
)

RSS_GOAL_MB = 150.0
GHL_CALLS_PER_EVENT = 2  # POST /contacts/upsert, POST /contacts/{id}/tags
API_CALLS_PER_EVENT = 3  # + GET /v1/payments/{id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run")
    parser.add_argument("--limit", default="100/10", help="sandbox GHL limit, requests/seconds")
    parser.add_argument("--latency", default="0.1-0.2", help="sandbox latency, seconds min-max")
    parser.add_argument("--app-rate-limit", default="same", help="same, off, or N/SECONDS")
    parser.add_argument("--retry-delays", default="60,300,900", help="the service's RETRY_DELAYS")
    parser.add_argument("--worker-class", default="rq.worker.SimpleWorker")
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="max seconds per drain")
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)

    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    limit_requests, _, limit_seconds = args.limit.partition("/")
    limit = (int(limit_requests), float(limit_seconds or 10))
    low, _, high = args.latency.partition("-")
    latency = (float(low), float(high or low))
    app_limit = args.limit if args.app_rate_limit == "same" else args.app_rate_limit
    rate_bound = limit[0] / limit[1] / GHL_CALLS_PER_EVENT
    per_event = API_CALLS_PER_EVENT * sum(latency) / 2

    runs: list[dict] = []
    with Session("burst", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        sandbox = session.sandbox()
        for n in counts:
            log(f"{n} worker(s): preparing {args.events} payments")
            session.redis().flushdb()
            control = sandbox.url + "/_sandbox"
            post_json(control + "/reset", {})
            for api in ("mercadopago", "gohighlevel"):
                post_json(
                    control + "/latency",
                    {"api": api, "min_seconds": latency[0], "max_seconds": latency[1]},
                )
            post_json(control + "/rate-limit", {"requests": limit[0], "per_seconds": limit[1]})
            payments = post_json(control + "/payments", [{"status": "approved"}] * args.events)
            url = session.database(args.db, tag=f"_{n}w")
            env = app_env(
                session,
                url,
                MP_API_BASE_URL=sandbox.url,
                GHL_API_BASE_URL=sandbox.url,
                SANDBOX_URL=sandbox.url,
                GHL_RATE_LIMIT=app_limit,
                RETRY_DELAYS=args.retry_delays,
                RQ_WORKER_CLASS=args.worker_class,
            )
            web = session.gunicorn(f"web-{n}w", "wsgi:app", env)
            scheduler = session.start(
                f"scheduler-{n}w", [sys.executable, str(common.CODE / "scheduler.py")], env
            )
            workers = [
                session.start(
                    f"worker-{n}w-{i}",
                    [sys.executable, str(common.CODE / "worker.py"), "--name", f"bench-{n}-{i}"],
                    env,
                )
                for i in range(n)
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                session.redis().exists(f"rq:worker:bench-{n}-{i}") for i in range(n)
            ):
                time.sleep(0.1)
            procs = {"web": web.proc, "scheduler": scheduler, "workers": workers}
            cpu0 = {name: _cpu(p) for name, p in procs.items()}
            sandbox_cpu0 = sandbox.proc.cpu()

            factory = RequestFactory([str(p["id"]) for p in payments])
            requests = factory.make(args.events)
            log(f"{n} worker(s): burst of {args.events} notifications")
            started_at = datetime.now(UTC).replace(tzinfo=None)
            started = time.monotonic()
            ingest = run_asyncio_load(
                web.url, requests, "burst", duration=600, concurrency=32,
                server_pids=[web.proc.pid, *web.worker_pids()],
            )  # fmt: skip
            ingest_seconds = time.monotonic() - started
            log(
                f"{n} worker(s): {ingest.ok} accepted in {ingest_seconds:.1f}s, "
                f"{ingest.errors} errors; draining"
            )
            status, timeline = _drain(url, started, args.timeout, workers + [scheduler])
            drain_seconds = time.monotonic() - started
            last_done = sql_rows(url, "SELECT max(processed_at) FROM webhook_events")[0][0]
            if isinstance(last_done, str):
                last_done = datetime.fromisoformat(last_done)
            finished = not (status.get("pending", 0) or status.get("processing", 0))
            if finished and last_done:
                drain_seconds = (last_done - started_at).total_seconds()
            cpu = {name: _cpu(p) - cpu0[name] for name, p in procs.items()}
            sandbox_cpu = sandbox.proc.cpu() - sandbox_cpu0
            memory = {
                "web worker": max(_peak(pid) for pid in web.worker_pids()),
                "rq worker": max(_peak(w.pid) for w in workers),
                "scheduler": _peak(scheduler.pid),
            }
            for proc in [*workers, scheduler]:
                session.stop(proc)
            session.stop(web)
            calls = _get(control + "/calls")
            ghl = [c for c in calls if c["api"] == "gohighlevel"]
            attempts = sql_rows(url, "SELECT count(*), coalesce(max(attempts), 0) FROM "
                                "webhook_events")[0]  # fmt: skip
            total_attempts = sql_rows(url, "SELECT count(*) FROM webhook_attempts")[0][0]
            outcomes = dict(
                sql_rows(url, "SELECT outcome, count(*) FROM webhook_attempts GROUP BY 1")
            )
            done = status.get("success", 0)
            rate = done / drain_seconds if drain_seconds else 0.0
            bound = min(rate_bound, n / per_event)
            runs.append(
                {
                    "workers": n,
                    "events": args.events,
                    "accepted": ingest.ok,
                    "ingest errors": ingest.errors,
                    "ingest s": ingest_seconds,
                    "drained": "yes" if finished else f"NO (timeout {args.timeout:g}s)",
                    "drain s": drain_seconds,
                    "events/s": rate,
                    "latency bound/s": n / per_event,
                    "rate bound/s": rate_bound,
                    "x bound": rate / bound if bound else None,
                    "ghl calls": len(ghl),
                    "ghl 429s": sum(1 for c in ghl if c["status"] == 429),
                    "ghl ok/s": sum(1 for c in ghl if c["status"] < 300) / drain_seconds,
                    "success": done,
                    "failed": status.get("failed", 0),
                    "pending/processing": status.get("pending", 0) + status.get("processing", 0),
                    "attempts": total_attempts,
                    "max attempts": attempts[1],
                    "attempt outcomes": outcomes,
                    "worker cpu %": 100 * cpu["workers"] / drain_seconds,
                    "scheduler cpu %": 100 * cpu["scheduler"] / drain_seconds,
                    "web cpu s": cpu["web"],
                    "sandbox cpu %": 100 * sandbox_cpu / drain_seconds,
                    "peak RSS web worker MB": memory["web worker"],
                    "peak RSS rq worker MB": memory["rq worker"],
                    "peak RSS scheduler MB": memory["scheduler"],
                    "timeline": timeline,
                }
            )
            log(f"{n} worker(s): {runs[-1]['drained']}, {drain_seconds:.0f}s, {status}")

    print(f"# Burst drain benchmark\n\n{note}\n")
    print(
        f"{args.events} notifications POSTed at once (32 connections) to gunicorn wsgi:app; "
        f"sandbox latency {latency[0]:g}-{latency[1]:g}s on both APIs, GHL limit "
        f"{limit[0]}/{limit[1]:g}s; service GHL_RATE_LIMIT={app_limit}, "
        f"RETRY_DELAYS={args.retry_delays}, {args.worker_class.rsplit('.', 1)[1]}, "
        f"{args.db}. Bounds: rate = {rate_bound:g} events/s (limit / {GHL_CALLS_PER_EVENT} "
        f"GHL calls per event); latency = workers / {per_event:.2f}s "
        f"({API_CALLS_PER_EVENT} calls x mean latency). Drain time: first notification "
        "sent -> last event processed.\n"
    )
    main_cols = (
        "workers", "accepted", "ingest errors", "drained", "drain s", "events/s",
        "latency bound/s", "rate bound/s", "x bound", "ghl ok/s", "ghl 429s", "success",
        "failed", "pending/processing", "attempts", "max attempts",
    )  # fmt: skip
    print(table(main_cols, [[r[c] for c in main_cols] for r in runs]))
    resource_cols = (
        "workers", "worker cpu %", "scheduler cpu %", "web cpu s", "sandbox cpu %",
        "peak RSS web worker MB", "peak RSS rq worker MB", "peak RSS scheduler MB",
    )  # fmt: skip
    print(table(resource_cols, [[r[c] for c in resource_cols] for r in runs]))
    for r in runs:
        print(f"- {r['workers']} worker(s): attempt outcomes {r['attempt outcomes']}")
    goals = []
    for r in runs:
        goals.append((f"{r['workers']}w: zero failed, all drained", r["failed"] == 0
                      and r["drained"] == "yes" and r["ingest errors"] == 0))  # fmt: skip
        peak = max(r["peak RSS web worker MB"], r["peak RSS rq worker MB"])
        goals.append((f"{r['workers']}w: peak RSS < {RSS_GOAL_MB:g} MB ({peak:.0f})",
                      peak < RSS_GOAL_MB))  # fmt: skip
    print(table(("goal", "met"), [(g, "yes" if ok else "NO") for g, ok in goals]))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "runs": runs}, indent=2, default=str))
    return 1 if args.check and not all(ok for _, ok in goals) else 0


def _drain(url: str, started: float, timeout: float, procs) -> tuple[dict, list]:  # noqa: ANN001
    """Poll the events' statuses every second until none is pending/processing, or timeout."""
    timeline = []
    deadline = started + timeout
    last_log = 0.0
    while True:
        status = dict(sql_rows(url, "SELECT status, count(*) FROM webhook_events GROUP BY 1"))
        now = time.monotonic()
        timeline.append((round(now - started, 1), status.get("success", 0)))
        if not (status.get("pending", 0) or status.get("processing", 0)) and status:
            return status, timeline
        if now > deadline:
            return status, timeline
        if now - last_log > 30:
            log(f"  {now - started:.0f}s: {status}")
            last_log = now
        dead = [p.name for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"{dead} exited during the drain:\n{procs[0].tail()}")
        time.sleep(1.0)


def _cpu(proc) -> float:  # noqa: ANN001
    if isinstance(proc, list):
        return sum(p.cpu() for p in proc)
    return proc.cpu()


def _peak(pid: int) -> float:
    return memory_mb(pid)[1] or 0.0


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return json.loads(answer.read())


if __name__ == "__main__":
    sys.exit(main())
