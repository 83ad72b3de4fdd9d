"""Processing overhead: events/s one RQ worker process completes, against a no-op ceiling.

    python bench/processing.py [--db sqlite,postgresql] [--events 500] [--check]

The sandbox (`python -m webhooks_app.sandbox`) answers at once (no latency, no
rate limit); the service's shared GHL limiter is off (`--app-rate-limit`), except
in one extra row where it is on with a limit nothing reaches, to show its cost.

For each worker class (`--classes`: simple = rq.worker.SimpleWorker, our default
RQ_WORKER_CLASS; fork = rq.worker.Worker, RQ's default, a fork per job), and per
database:

- ceiling: `python worker.py` (the service's own entry point and app context)
  running `--noop-jobs` no-op jobs (bench/noop_jobs.py), measured before and
  after the pipeline runs (the mean is the ceiling; the drift shows the noise);
- pipeline: `--events` stored events about distinct sandbox payments (approved,
  with a payer e-mail: GET payment, upsert payment, GHL upsert contact, add tag).

Each phase: RQ is suspended, the worker started and left idle, the jobs queued,
then RQ resumed; the rate is the jobs over the span from the first job's start
to the last job's end (RQ's own timestamps), so start-up is not counted. CPU is
the worker's (with its work-horses) and the sandbox's, per job, over the phase.
Goal (the issue's): pipeline >= 0.3 x the ceiling with the default class.

`--accounts 1,100` (issue 18) measures instead the SimpleWorker pipeline with 1 account
and with N, in `--rounds` alternated rounds: per count a database of its own; 1 is the
single-account service of before (the default account alone), N is N accounts created
through the Account model (secrets encrypted, each its own MercadoPago token and GHL
location), the events spread over them (event k to account k mod N: N bulk queues,
served in turn by the fair worker). The no-op ceiling runs once before and once after,
on the 1-account database. Reported: jobs/s and worker CPU per job of each phase, and
N accounts / 1 account per round. Goal: >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import common
from common import (
    QUEUE,
    MachineCpu,
    Session,
    add_common_arguments,
    app_env,
    comma_list,
    create_accounts,
    environment_note,
    log,
    memory_mb,
    py_spy,
    store_payment_events,
    summarise_profile,
    table,
)

CLASSES = {"simple": "rq.worker.SimpleWorker", "fork": "rq.worker.Worker"}
RATIO_GOAL = 0.3
ACCOUNTS_GOAL = 0.9  # N accounts / 1 account (issue 18)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=500, help="events per pipeline phase")
    parser.add_argument("--noop-jobs", type=int, default=1000, help="jobs per ceiling phase")
    parser.add_argument("--classes", default="simple,fork", help="simple, fork or both")
    parser.add_argument("--app-rate-limit", default="off", help="GHL_RATE_LIMIT for the worker")
    parser.add_argument(
        "--no-limiter-row", action="store_true", help="skip the non-binding limiter row"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="max seconds per phase")
    parser.add_argument("--profile", action="store_true", help="py-spy the SimpleWorker")
    parser.add_argument(
        "--accounts",
        help="e.g. 1,100: compare the pipeline with 1 account and with N, alternated rounds",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --accounts")
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if the goal is missed")
    args = parser.parse_args(argv)
    kinds = comma_list(args.db)
    classes = comma_list(args.classes)

    rows: list[dict] = []
    profiles: dict[str, str] = {}
    with Session("processing", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        sandbox = session.sandbox()
        # The in-process app (to store events and queue jobs) reads the environment at import.
        os.environ.update(
            app_env(
                session,
                "sqlite://",
                MP_API_BASE_URL=sandbox.url,
                GHL_API_BASE_URL=sandbox.url,
                SANDBOX_URL=sandbox.url,
                LOG_LEVEL="WARNING",
                GHL_RATE_LIMIT=args.app_rate_limit,
            )
        )
        os.environ.pop("DATABASE_URL")
        from redis import Redis
        from rq import Queue
        from rq.registry import FailedJobRegistry, FinishedJobRegistry
        from rq.suspension import resume, suspend

        from webhooks_app import create_app
        from webhooks_app.config import normalise_database_url
        from webhooks_app.queueing import job_id

        redis: Redis = session.redis()

        def phase(label, cls, env, n, enqueue, profile_name=None, queues=(QUEUE,)):
            """Suspend RQ, start an idle worker, queue `n` jobs, resume, wait, measure.
            `queues`: where the jobs are (their finished and failed registries are counted)."""
            redis.flushdb()
            suspend(redis)
            name = f"bench-{uuid.uuid4().hex[:8]}"
            argv = [sys.executable, str(common.CODE / "worker.py"), "--name", name]
            worker_env = {**env, "RQ_WORKER_CLASS": CLASSES[cls]}
            proc = session.start(f"worker-{label}", argv, worker_env)
            _wait(lambda: redis.exists(f"rq:worker:{name}"), 60, proc, "worker registered")
            ids = enqueue(n)
            keys = [
                registry(name, connection=redis).key
                for name in queues
                for registry in (FinishedJobRegistry, FailedJobRegistry)
            ]
            failed_keys = keys[1::2]

            def done_count(keys=keys):
                with redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.zcard(key)
                    return sum(pipe.execute())

            sandbox_cpu0, worker_cpu0, machine0 = sandbox.proc.cpu(), proc.cpu(), MachineCpu.busy()
            started = time.monotonic()
            spy = py_spy([proc.pid], session.tmp, profile_name) if profile_name else None
            files = spy.__enter__() if spy else None
            resume(redis)
            try:
                _wait(lambda: done_count() >= n, args.timeout, proc, f"{n} jobs done")
            finally:
                if spy:
                    spy.__exit__(None, None, None)
            wall = time.monotonic() - started
            worker_cpu = proc.cpu() - worker_cpu0
            sandbox_cpu = sandbox.proc.cpu() - sandbox_cpu0
            machine = MachineCpu.busy() - machine0
            peak = memory_mb(proc.pid)[1]
            failed = done_count(failed_keys)
            session.stop(proc)
            from rq.job import Job

            jobs = [j for j in Job.fetch_many(ids, connection=redis) if j is not None]
            starts = [j.started_at for j in jobs if j.started_at]
            ends = [j.ended_at for j in jobs if j.ended_at]
            span = (max(ends) - min(starts)).total_seconds() if starts and ends else wall
            if files:
                profiles[label] = summarise_profile(files)
            return {
                "label": label,
                "class": CLASSES[cls].rsplit(".", 1)[1],
                "jobs": n,
                "failed jobs": failed,
                "span s": span,
                "jobs/s": n / span,
                "worker cpu ms/job": 1000 * worker_cpu / n,
                "sandbox cpu ms/job": 1000 * sandbox_cpu / n,
                "others cpu %": 100 * max(0.0, machine - worker_cpu - sandbox_cpu) / wall,
                "worker peak RSS MB": peak,
            }

        def noop_enqueue(n):
            queue = Queue(QUEUE, connection=redis)
            ids = [f"noop-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
            with redis.pipeline() as pipe:
                for i, jid in enumerate(ids):
                    queue.enqueue("noop_jobs.noop", i, job_id=jid, result_ttl=3600, pipeline=pipe)
                pipe.execute()
            return ids

        def worker_env(url):
            return app_env(
                session,
                url,
                MP_API_BASE_URL=sandbox.url,
                GHL_API_BASE_URL=sandbox.url,
                SANDBOX_URL=sandbox.url,
                GHL_RATE_LIMIT=args.app_rate_limit,
            )

        def compare_accounts(kind, counts, phase, noop_enqueue, worker_env, rows):
            """The SimpleWorker pipeline with 1 account and with N, in alternated rounds."""
            from webhooks_app.queueing import account_queue_name

            targets = {}
            for n in counts:
                url = session.database(kind, tag=f"_{n}acc")
                ids = [1]
                if n > 1:
                    log(f"{kind}: creating {n} accounts")
                    slugs = [f"acct-{i + 1}" for i in range(n)]
                    ids = [a.id for a in create_accounts(session, url, slugs)]
                app = create_app(
                    "development", {"SQLALCHEMY_DATABASE_URI": normalise_database_url(url)}
                )

                def enqueue(count, app=app, ids=ids):
                    stored = store_payment_events(app, sandbox.url, count, ids)
                    return [job_id(event_id, 1) for event_id in stored]

                with app.app_context():
                    queues = [account_queue_name(i) for i in ids]
                targets[n] = (url, worker_env(url), enqueue, queues)
            first_env = targets[counts[0]][1]
            log(f"{kind}: ceiling (no-op jobs, {counts[0]} account(s))")
            before = phase(f"{kind} noop", "simple", first_env, args.noop_jobs, noop_enqueue)
            pipes = []
            for round_ in range(args.rounds):
                for n in counts if round_ % 2 == 0 else counts[::-1]:
                    url, env, enqueue, queues = targets[n]
                    log(f"{kind}: pipeline, {n} account(s), round {round_ + 1}")
                    row = phase(
                        f"{kind} pipeline, {n} account(s)", "simple", env, args.events,
                        enqueue, queues=queues,
                    )  # fmt: skip
                    row.update(accounts=n, round=round_ + 1)
                    pipes.append(row)
            log(f"{kind}: ceiling again")
            after = phase(f"{kind} noop again", "simple", first_env, args.noop_jobs, noop_enqueue)
            ceiling = (before["jobs/s"] + after["jobs/s"]) / 2
            for row in (before, *pipes, after):
                row["x ceiling"] = row["jobs/s"] / ceiling
                row["db"] = kind
                rows.append(row)
            for n, (url, *_rest) in targets.items():
                statuses = common.sql_rows(
                    url, "SELECT status, count(*), count(DISTINCT account_id) FROM webhook_events "
                    "GROUP BY 1"
                )  # fmt: skip
                log(f"{kind}: {n} account(s): events {statuses} (status, events, accounts)")

        if args.accounts:
            counts = [int(n) for n in comma_list(args.accounts)]
            for kind in kinds:
                compare_accounts(kind, counts, phase, noop_enqueue, worker_env, rows)
            kinds = []  # nothing else to run

        for kind in kinds:
            url = session.database(kind)
            env = app_env(
                session,
                url,
                MP_API_BASE_URL=sandbox.url,
                GHL_API_BASE_URL=sandbox.url,
                SANDBOX_URL=sandbox.url,
                GHL_RATE_LIMIT=args.app_rate_limit,
            )
            app = create_app(
                "development", {"SQLALCHEMY_DATABASE_URI": normalise_database_url(url)}
            )

            def pipeline_enqueue(n, app=app):
                ids = store_payment_events(app, sandbox.url, n)
                return [job_id(event_id, 1) for event_id in ids]

            for cls in classes:
                log(f"{kind} / {cls}: ceiling (no-op jobs)")
                before = phase(f"{kind} {cls} noop", cls, env, args.noop_jobs, noop_enqueue)
                log(f"{kind} / {cls}: pipeline ({args.events} events)")
                spy_name = f"processing-{kind}-{cls}" if args.profile and cls == "simple" else None
                pipe = phase(
                    f"{kind} {cls} pipeline", cls, env, args.events, pipeline_enqueue, spy_name
                )
                limited = None
                if cls == "simple" and not args.no_limiter_row:
                    log(f"{kind} / {cls}: pipeline with the shared GHL limiter on (non-binding)")
                    limited = phase(
                        f"{kind} {cls} pipeline + limiter",
                        cls,
                        {**env, "GHL_RATE_LIMIT": "1000000/10"},
                        args.events,
                        pipeline_enqueue,
                    )
                log(f"{kind} / {cls}: ceiling again")
                after = phase(f"{kind} {cls} noop again", cls, env, args.noop_jobs, noop_enqueue)
                ceiling = (before["jobs/s"] + after["jobs/s"]) / 2
                for row in (before, after, pipe, limited):
                    if row is not None:
                        row["x ceiling"] = row["jobs/s"] / ceiling
                        row["db"] = kind
                        rows.append(row)
                statuses = common.sql_rows(
                    url, "SELECT status, attempts, count(*) FROM webhook_events GROUP BY 1, 2"
                )
                pipe["event statuses"] = ", ".join(f"{s} x{a}: {c}" for s, a, c in statuses)
            app = None

    if args.accounts:
        return report_accounts(note, rows, args)
    print(f"# Processing benchmark\n\n{note}\n")
    print(
        "One worker process (`python worker.py`, RQ_WORKER_CLASS as shown), sandbox answering "
        f"at once, GHL_RATE_LIMIT={args.app_rate_limit} (except the '+ limiter' row: "
        "1000000/10, never reached). Ceiling: the same worker running no-op jobs; "
        "'x ceiling' = jobs/s over the mean of the two no-op runs of that class.\n"
    )
    headers = (
        "db", "label", "class", "jobs", "failed jobs", "jobs/s", "x ceiling",
        "worker cpu ms/job", "sandbox cpu ms/job", "others cpu %", "worker peak RSS MB",
    )  # fmt: skip
    print(table(headers, [[row.get(h) for h in headers] for row in rows]))
    for row in rows:
        if "event statuses" in row:
            print(f"- {row['db']} {row['class']}: events after the run: {row['event statuses']}")
    goals = []
    for row in rows:
        if row["label"].endswith("simple pipeline"):
            goals.append((row["db"], row["x ceiling"] >= RATIO_GOAL and not row["failed jobs"]))
            print(
                f"\ngoal {row['db']}: SimpleWorker pipeline >= {RATIO_GOAL} x ceiling: "
                f"{row['x ceiling']:.2f} -> {'met' if goals[-1][1] else 'MISSED'}"
            )
    for label, text in profiles.items():
        print(f"\n## profile of the worker ({label})\n\n{text}")
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rows": rows}, indent=2, default=str))
    return 1 if args.check and not all(ok for _, ok in goals) else 0


def report_accounts(note: str, rows: list[dict], args) -> int:  # noqa: ANN001
    """The --accounts tables; the exit code."""
    print(f"# Processing benchmark: 1 account vs N (issue 18)\n\n{note}\n")
    print(
        "One `python worker.py` (SimpleWorker), sandbox answering at once, GHL_RATE_LIMIT="
        f"{args.app_rate_limit}, {args.events} events per pipeline phase; 1 account: the "
        "default account alone; N: the events spread over N accounts (N queues). 'x ceiling' "
        "= jobs/s over the mean of the two no-op runs.\n"
    )
    headers = (
        "db", "label", "round", "jobs", "failed jobs", "jobs/s", "x ceiling",
        "worker cpu ms/job", "sandbox cpu ms/job", "others cpu %", "worker peak RSS MB",
    )  # fmt: skip
    print(table(headers, [[row.get(h) for h in headers] for row in rows]))
    goals = []
    counts = [int(n) for n in comma_list(args.accounts)]
    base = counts[0]
    for kind in dict.fromkeys(row["db"] for row in rows):
        mine = [row for row in rows if row["db"] == kind and "accounts" in row]
        for n in counts[1:]:
            ratios, cpu = [], []
            for round_ in sorted({row["round"] for row in mine}):
                of = {row["accounts"]: row for row in mine if row["round"] == round_}
                ratios.append(of[n]["jobs/s"] / of[base]["jobs/s"])
                cpu.append(of[n]["worker cpu ms/job"] / of[base]["worker cpu ms/job"])
            pooled = _pooled(mine, n) / _pooled(mine, base)
            failed = sum(row["failed jobs"] for row in mine)
            goals.append(
                (kind, f"{n} accounts / {base}: jobs/s per round (pooled); worker CPU per job",
                 " / ".join(f"{r:.2f}" for r in ratios) + f" ({pooled:.2f}); CPU x"
                 + " / ".join(f"{c:.2f}" for c in cpu) + f"; failed jobs {failed}",
                 pooled >= ACCOUNTS_GOAL and not failed)
            )  # fmt: skip
    marks = [(*g[:3], "yes" if g[3] else "NO") for g in goals]
    print(table(("db", f"goal: >= {ACCOUNTS_GOAL}", "measured", "met"), marks))
    if args.json:
        args.json.write_text(json.dumps({"note": note, "rows": rows}, indent=2, default=str))
    return 1 if args.check and not all(g[3] for g in goals) else 0


def _pooled(rows: list[dict], n: int) -> float:
    """A count's jobs over its phases' spans, all rounds together."""
    mine = [row for row in rows if row["accounts"] == n]
    return sum(row["jobs"] for row in mine) / sum(row["span s"] for row in mine)


def _wait(condition, timeout: float, proc, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}:\n{proc.tail()}")


if __name__ == "__main__":
    sys.exit(main())
