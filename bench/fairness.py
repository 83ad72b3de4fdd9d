"""Fair scheduling: how long account B's events wait while account A has a backlog.

    python bench/fairness.py [--db sqlite,postgresql] [--backlog 5000] [--check]

The issue's goal: "a backlog of 5,000 events for account A does not delay account B's
next event by more than a few seconds". Per database and mode, from scratch: a fresh
database with accounts `a`, `b` and `--idle-accounts` idle ones (created through the
Account model, secrets encrypted: bench/make_accounts.py); the sandbox with latency
`--latency` on both APIs and GoHighLevel's limit `--limit` per location; the service as
deployed: gunicorn (Procfile settings) and `--workers` `python worker.py` (the default
SimpleWorker), GHL_RATE_LIMIT `--app-rate-limit` (default: the service's own default).

1. A's backlog: `--backlog` notifications POSTed to `/webhooks/mp/a` (32 connections),
   each signed with A's secret; the workers start on them at once.
2. `--settle` seconds later, with the workers busy on A's backlog, B's `--b-events`
   notifications are POSTed to `/webhooks/mp/b` one at a time, `--spacing` s apart.
3. The run waits until B's events are processed (or `--timeout` s after the last one).

B's delay is its event's `processed_at - received_at`, from the database (the web
server's and the worker's clocks: the same machine); split into the wait for a worker
(the attempt's `started_at - received_at`) and the attempt itself. A's throughput is its
events processed per second over the same window (first B event received to last
processed).

Modes (`--modes`): `fair` is the service as it is (A's and B's events on their accounts'
own queues, the workers serving the queues in turn: fair_worker.py); `unfair` is the
baseline, the same run with every account's events on one FIFO queue, as before
per-account queues (bench/one_queue_app.py: the web app with `account_queue_name`
answering the default queue for every account; the workers are unchanged). In that mode
B's events sit behind what is left of A's backlog: when they are not processed within
`--unfair-timeout` s their delay is reported as "> the time waited", with a projection
(A's events still ahead of B's first one / A's measured rate).

Goal: with fairness, B's delay p100 <= 5 s and every B event `success`.
`--check` exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from datetime import datetime

import common
from common import (
    MachineCpu,
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    comma_list,
    create_accounts,
    environment_note,
    log,
    percentile,
    post_json,
    run_asyncio_load,
    sql_rows,
    table,
)

DELAY_GOAL_S = 5.0
APPS = {"fair": "wsgi:app", "unfair": "one_queue_app:app"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--modes", default="fair,unfair", help="fair, unfair or both (in turn)")
    parser.add_argument("--backlog", type=int, default=5000, help="A's notifications")
    parser.add_argument("--b-events", type=int, default=10, help="B's notifications")
    parser.add_argument("--spacing", type=float, default=1.5, help="seconds between B's")
    parser.add_argument("--settle", type=float, default=3.0, help="s after A's backlog, before B")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--idle-accounts", type=int, default=3, help="accounts with no events")
    parser.add_argument("--latency", default="0.02-0.05", help="sandbox latency, s min-max")
    parser.add_argument("--limit", default="100/10", help="sandbox GHL limit per location, or off")
    parser.add_argument(
        "--app-rate-limit", default="", help="the service's GHL_RATE_LIMIT (default: its default)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="fair: max wait for B's")
    parser.add_argument("--unfair-timeout", type=float, default=150.0, help="unfair: max wait")
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    parser.add_argument("--check", action="store_true", help="exit 1 if the goal is missed")
    args = parser.parse_args(argv)

    low, _, high = args.latency.partition("-")
    latency = (float(low), float(high or low))
    runs: list[dict] = []
    failures: list[str] = []
    with Session("fairness", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        sandbox = session.sandbox()
        for kind in comma_list(args.db):
            for mode in comma_list(args.modes):
                try:
                    runs.append(one_run(session, sandbox, kind, mode, args, latency))
                except Exception as exc:  # noqa: BLE001 - report it, run the others
                    log(f"{kind} / {mode} FAILED: {type(exc).__name__}: {exc}")
                    failures.append(f"{kind} / {mode}: {type(exc).__name__}: {exc}")
                    for proc in list(session.procs):
                        if proc is not sandbox.proc:
                            session.stop(proc)
                    continue
                log(f"{kind} / {mode}: {_summary(runs[-1])}")

    print(f"# Fairness benchmark\n\n{note}\n")
    print(
        f"Account A: {args.backlog:,} notifications POSTed at once (32 connections) to "
        f"/webhooks/mp/a; {args.settle:g} s later, account B: {args.b_events} notifications "
        f"to /webhooks/mp/b, one every {args.spacing:g} s. {args.workers} `python worker.py` "
        f"(SimpleWorker), {args.idle_accounts} idle accounts besides; sandbox latency "
        f"{latency[0]:g}-{latency[1]:g} s on both APIs, GHL limit {args.limit} per location; "
        f"service GHL_RATE_LIMIT={args.app_rate_limit or 'its default'}. B's delay: "
        "processed_at - "
        "received_at (the database's); wait: until its attempt started. A events/s: in B's "
        "window (first B received to last B processed) and over the run (first A received to "
        "last A processed). `unfair`: every account's events on one FIFO queue "
        "(bench/one_queue_app.py).\n"
    )
    cols = (
        "db", "mode", "A accepted", "A ingest errors", "A ingest s", "B processed", "B delay p50 s",
        "B delay p90 s", "B delay p100 s", "B wait p100 s", "B attempt p100 s",
        "A events/s (B window)", "A events/s (run)", "A processed", "ghl 429s",
        "global GHL pauses", "others cpu %",
    )  # fmt: skip
    print(table(cols, [[r[c] for c in cols] for r in runs]))
    for failure in failures:
        print(f"- FAILED (not in the table): {failure}")
    for r in runs:
        print(f"- {r['db']} / {r['mode']}: B's delays, s: {r['B delays']}")
        if r.get("projection"):
            print(f"  {r['projection']}")
    print()
    goals = []
    by_key = {(r["db"], r["mode"]): r for r in runs}
    for r in runs:
        if r["mode"] != "fair":
            continue
        worst = r["B delay p100 s"]
        ok = r["B processed"] == r["B events"] and worst <= DELAY_GOAL_S
        base = by_key.get((r["db"], "unfair"))
        versus = f"; unfair: {base['B delay p100 s']}" if base else ""
        goals.append((r["db"], f"B's delay p100 <= {DELAY_GOAL_S:g} s", f"{worst}{versus}", ok))
    marks = [(*g[:3], "yes" if g[3] else "NO") for g in goals]
    print(table(("db", "goal", "measured", "met"), marks))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "runs": runs}, indent=2, default=str))
    return 1 if args.check and (failures or not all(g[3] for g in goals)) else 0


def one_run(session, sandbox, kind: str, mode: str, args, latency) -> dict:  # noqa: ANN001
    """One database, one mode: A's backlog, B's events one at a time, the delays measured."""
    redis = session.redis()
    redis.flushdb()
    control = sandbox.url + "/_sandbox"
    post_json(control + "/reset", {})
    for api in ("mercadopago", "gohighlevel"):
        post_json(
            control + "/latency", {"api": api, "min_seconds": latency[0], "max_seconds": latency[1]}
        )
    if args.limit != "off":
        requests_, _, seconds = args.limit.partition("/")
        post_json(
            control + "/rate-limit", {"requests": int(requests_), "per_seconds": float(seconds)}
        )
    log(f"{kind} / {mode}: database, accounts, {args.backlog + args.b_events} sandbox payments")
    url = session.database(kind, tag=f"_{mode}")
    idle = [f"idle-{i + 1}" for i in range(args.idle_accounts)]
    accounts = {a.slug: a for a in create_accounts(session, url, ["a", "b", *idle])}
    a, b = accounts["a"], accounts["b"]
    payments = post_json(control + "/payments", [{"status": "approved"}] * args.backlog)
    b_payments = post_json(control + "/payments", [{"status": "approved"}] * args.b_events)
    env = app_env(
        session,
        url,
        MP_API_BASE_URL=sandbox.url,
        GHL_API_BASE_URL=sandbox.url,
        SANDBOX_URL=sandbox.url,
    )
    if args.app_rate_limit:
        env["GHL_RATE_LIMIT"] = args.app_rate_limit
    else:  # the service's own default, whatever the caller's environment says
        env.pop("GHL_RATE_LIMIT", None)
    web = session.gunicorn(f"web-{kind}-{mode}", APPS[mode], env)
    names = [f"bench-fair-{kind}-{mode}-{i}" for i in range(args.workers)]
    workers = [
        session.start(
            f"worker-{kind}-{mode}-{i}",
            [sys.executable, str(common.CODE / "worker.py"), "--name", name],
            env,
        )
        for i, name in enumerate(names)
    ]
    deadline = time.monotonic() + 60
    while not all(redis.exists(f"rq:worker:{n}") for n in names):
        if time.monotonic() > deadline or not all(w.alive() for w in workers):
            raise RuntimeError(f"workers did not start:\n{workers[0].tail()}")
        time.sleep(0.1)

    machine0, cpu0 = MachineCpu.busy(), _cpu([web.proc, *workers, sandbox.proc])
    wall0 = time.monotonic()
    log(f"{kind} / {mode}: A's backlog of {args.backlog:,} notifications")
    started = time.monotonic()
    backlog = RequestFactory([str(p["id"]) for p in payments], accounts=[a]).make(args.backlog)
    ingest = run_asyncio_load(
        web.url, backlog, "A backlog", duration=600, concurrency=32,
        server_pids=[web.proc.pid, *web.worker_pids()],
    )  # fmt: skip
    ingest_s = time.monotonic() - started
    time.sleep(args.settle)
    busy = _statuses(url, a.id)
    log(f"{kind} / {mode}: {ingest.ok:,} accepted in {ingest_s:.1f}s; A now {busy}; B's events")
    b_factory = RequestFactory([str(p["id"]) for p in b_payments], accounts=[b])
    first = time.monotonic()
    for i, request in enumerate(b_factory.make(args.b_events)):
        _wait_until(first + i * args.spacing)
        _post(web.url, request)
    timeout = args.unfair_timeout if mode == "unfair" else args.timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = sql_rows(
            url,
            f"SELECT count(*) FROM webhook_events WHERE account_id = {b.id} "
            "AND processed_at IS NULL",
        )[0][0]
        if not left:
            break
        if not all(w.alive() for w in workers):
            raise RuntimeError(f"a worker exited:\n{workers[0].tail()}")
        time.sleep(0.25)
    waited_s = time.monotonic() - first
    cpu = _cpu([web.proc, *workers, sandbox.proc]) - cpu0
    machine, wall = MachineCpu.busy() - machine0, time.monotonic() - wall0
    rows = sql_rows(
        url,
        "SELECT e.id, e.status, e.received_at, e.processed_at, min(t.started_at) "
        "FROM webhook_events e LEFT JOIN webhook_attempts t ON t.event_id = e.id "
        f"WHERE e.account_id = {b.id} GROUP BY e.id, e.status, e.received_at, e.processed_at "
        "ORDER BY e.id",
    )
    first_a = f"SELECT min(received_at) FROM webhook_events WHERE account_id = {a.id}"
    a_first = _dt(sql_rows(url, first_a)[0][0])
    a_done = sorted(
        _dt(x)
        for (x,) in sql_rows(
            url,
            f"SELECT processed_at FROM webhook_events WHERE account_id = {a.id} "
            "AND processed_at IS NOT NULL",
        )
    )
    received = [_dt(r[2]) for r in rows]
    processed = [_dt(r[3]) if r[3] is not None else None for r in rows]
    attempt_start = [_dt(r[4]) if r[4] is not None else None for r in rows]
    # Unprocessed: at least as long as the run waited (received -> the end of the wait).
    end = max(processed) if processed and all(processed) else None
    delays, waits, attempts = [], [], []
    for got, done, start in zip(received, processed, attempt_start, strict=True):
        if done is not None:
            delays.append((done - got).total_seconds())
            waits.append((start - got).total_seconds() if start else None)
            attempts.append((done - start).total_seconds() if start else None)
        else:
            delays.append(None)
    lower_bounds = [
        waited_s - (got - received[0]).total_seconds()
        for got, delay in zip(received, delays, strict=True)
        if delay is None
    ]
    window_start = received[0] if received else None
    window_end = end or (window_start and _latest(a_done, window_start))
    a_in_window = [t for t in a_done if window_start and window_start <= t <= (window_end or t)]
    span = (window_end - window_start).total_seconds() if window_start and window_end else 0
    known = sorted(d for d in delays if d is not None)
    projection = None
    if lower_bounds:
        ahead = sql_rows(
            url,
            f"SELECT count(*) FROM webhook_events WHERE account_id = {a.id} "
            f"AND processed_at IS NULL AND id < {rows[0][0]}",
        )[0][0]
        rate = len(a_in_window) / span if span else 0
        more = f"~{ahead / rate:,.0f} s more at A's rate" if rate else "A made no progress"
        projection = (
            f"not processed after {waited_s:.0f} s: {ahead:,} of A's events still ahead of B's "
            f"first in the queue ({more})"
        )

    def fmt(values: list[float | None]) -> str:
        return ", ".join("-" if v is None else f"{v:.2f}" for v in values)

    def worst(values: list[float]) -> str | float:
        if lower_bounds:
            return f"> {min(lower_bounds):.0f}"
        return max(values) if values else "-"

    calls = _get(control + "/calls")
    ghl = [c for c in calls if c.get("api") == "gohighlevel"]
    pauses = sum(w.tail(10**7).count("rate limited: all workers pause") for w in workers)
    for proc in workers:
        session.stop(proc)
    session.stop(web)
    return {
        "db": kind,
        "mode": mode,
        "A accepted": ingest.ok,
        "A ingest errors": ingest.errors,
        "A ingest s": ingest_s,
        "B events": args.b_events,
        "B processed": sum(1 for r in rows if r[1] == "success"),
        "B delay p50 s": percentile(known, 50) if not lower_bounds else "-",
        "B delay p90 s": percentile(known, 90) if not lower_bounds else "-",
        "B delay p100 s": worst(known),
        "B wait p100 s": max((w for w in waits if w is not None), default=None),
        "B attempt p100 s": max((x for x in attempts if x is not None), default=None),
        "B delays": fmt(delays),
        "A events/s (B window)": len(a_in_window) / span if span else None,
        "A events/s (run)": (
            len(a_done) / (a_done[-1] - a_first).total_seconds() if len(a_done) > 1 else None
        ),
        "A processed": len(a_done),
        "A statuses at B's start": busy,
        "ghl 429s": sum(1 for c in ghl if c.get("status") == 429),
        "global GHL pauses": pauses,
        "others cpu %": 100 * max(0.0, machine - cpu) / wall if wall else None,
        "projection": projection,
    }


def _latest(values: list[datetime], floor: datetime) -> datetime | None:
    return values[-1] if values and values[-1] >= floor else None


def _summary(run: dict) -> str:
    return (
        f"B delay p100 {run['B delay p100 s']}, B processed {run['B processed']}/"
        f"{run['B events']}, A {run['A events/s (B window)'] or 0:.2f}/s"
    )


def _statuses(url: str, account_id: int) -> dict:
    return dict(
        sql_rows(
            url,
            f"SELECT status, count(*) FROM webhook_events WHERE account_id = {account_id} "
            "GROUP BY 1",
        )
    )


def _post(base: str, request) -> None:  # noqa: ANN001
    answer = urllib.request.urlopen(  # noqa: S310 - loopback
        urllib.request.Request(
            base + request.path,
            request.body.encode(),
            {
                "Content-Type": "application/json",
                "x-request-id": request.request_id,
                "x-signature": request.signature,
            },
        ),
        timeout=30,
    )
    with answer:
        if answer.status != 200:
            raise RuntimeError(f"B's notification answered {answer.status}")


def _wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _dt(value) -> datetime:  # noqa: ANN001
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _cpu(procs) -> float:  # noqa: ANN001
    return sum(p.cpu() for p in procs)


def _get(url: str) -> list:
    with urllib.request.urlopen(url, timeout=120) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())


if __name__ == "__main__":
    sys.exit(main())
