"""Retention purge at scale: its rate, and ingestion while it runs, on 10^6 stored events.

    python bench/purge.py [--db postgresql] [--events 1000000] [--batch-size 500] [--check]

One database (`bench_purge_<pid>` on PostgreSQL, or a SQLite file), filled with
bench/history.py's realistic history (COPY / executemany; received over 180 days,
so about half is older than RETENTION_DAYS=90), then:

1. batch-size trials, no load: `flask webhooks purge --older-than Nd --batch-size B`
   for each of `--trial-sizes`, each on its own 5-day slice of the oldest history
   (the cutoffs move forward, so every trial purges fresh rows): rows/s per size;
2. ingestion, `POST /webhooks/mp` on the service under gunicorn (the Procfile's
   settings), closed loop (wrk if installed), `--slices` slices without a purge;
3. the same slices while `flask webhooks purge --older-than 90d --batch-size B`
   runs in its own process (slices are counted only while it is alive);
4. the same slices again without a purge (the baseline is the mean of 2 and 4, so
   that a drift of the shared machine's load does not count as the purge's cost).

Goal (issue 17): ingestion during the purge >= 0.8 x without. `--check` exits 1
when it is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from common import (
    BIN,
    Loader,
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    comma_list,
    environment_note,
    log,
    merge,
    sql_scalar,
    table,
    wrk_available,
)
from history import Filler

RATIO_GOAL = 0.8
PURGED = re.compile(r"purged (\d+) event\(s\).*in (\d+) batch\(es\), ([\d.]+)s")
DUE = "purged_at IS NULL AND status IN ('success', 'ignored') AND processed_at < "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql", help="postgresql, sqlite or both")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=500, help="the purge under load")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between its batches")
    parser.add_argument("--trial-sizes", default="100,500,2000", help="batch sizes, no load")
    parser.add_argument("--slices", type=int, default=4, help="ingestion slices per phase")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--max-during", type=int, default=20, help="most slices during purge")
    parser.add_argument("--connections", type=int, default=32)
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if the goal is missed")
    args = parser.parse_args(argv)

    results: dict[str, dict] = {}
    with Session("purge", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        loader = Loader(RequestFactory(), session.tmp, args.connections, wrk_available())
        for kind in comma_list(args.db):
            url = session.database(kind)
            env = app_env(session, url, LOG_LEVEL="WARNING")
            log(f"{kind}: filling webhook_events to {args.events:,} rows")
            started = time.monotonic()
            Filler(url).fill_to(args.events)
            fill_s = time.monotonic() - started
            row: dict = {"rows": args.events, "fill s": fill_s}
            row["due at 90d"] = due(url, kind, 90)
            log(f"{kind}: {args.events:,} rows in {fill_s:.0f}s; {row['due at 90d']:,} due")

            trials = []
            for number, size in enumerate(int(x) for x in comma_list(args.trial_sizes)):
                days = 180 - 5 * (number + 1)
                proc = session.start(f"trial-{kind}-{size}", purge_argv(days, size), env)
                code = proc.popen.wait(1800)
                events, batches, seconds = parse_purge(proc.tail(), code)
                trials.append((size, days, events, batches, seconds, events / seconds))
                log(f"{kind}: batch {size}: {events:,} rows in {seconds:.1f}s")
            row["trials"] = trials

            web = session.gunicorn(f"web-{kind}", "wsgi:app", env)
            loader.closed(web, "warm-up", 1.0)
            before = [loader.closed(web, "no purge", args.slice) for _ in range(args.slices)]
            log(f"{kind}: ingestion during the purge (batch {args.batch_size})")
            purger = session.start(
                f"purge-{kind}", [*purge_argv(90, args.batch_size), "--pause", str(args.pause)], env
            )
            during = []
            while purger.alive() and len(during) < args.max_during:
                result = loader.closed(web, "during purge", args.slice)
                if purger.alive():  # a slice the purge outlived entirely
                    during.append(result)
            code = purger.popen.wait(3600)
            events, batches, seconds = parse_purge(purger.tail(), code)
            after = [loader.closed(web, "no purge", args.slice) for _ in range(args.slices)]
            session.stop(web)
            base = merge(before + after, "no purge")
            load = merge(during, "during purge") if during else None
            row.update(
                {
                    "ingest req/s, no purge (before+after)": base.rate,
                    "ingest req/s, before": merge(before, "b").rate,
                    "ingest req/s, after": merge(after, "a").rate,
                    "ingest req/s, during purge": load.rate if load else None,
                    "during / no purge": load.rate / base.rate if load else None,
                    "slices during purge": len(during),
                    "ingest p99 ms, no purge / during": (
                        f"{base.p99:.1f} / {load.p99:.1f}" if load else None
                    ),
                    "ingest errors": base.errors + (load.errors if load else 0),
                    "purged under load": events,
                    "purge batch size": args.batch_size,
                    "pause between batches s": args.pause,
                    "purge batches": batches,
                    "purge s": seconds,
                    "purge rows/s under load": events / seconds if seconds else None,
                    "left due at 90d": due(url, kind, 90),
                }
            )
            results[kind] = row
            session.redis().flushdb()

    print(f"# Purge benchmark\n\n{note}\n")
    print(
        f"{args.events:,} stored events (bench/history.py's filler); ingestion: "
        f"{'wrk' if wrk_available() else 'python asyncio'}, {args.connections} connections, "
        f"{args.slice:g}s slices; the purge: `flask webhooks purge --older-than 90d "
        f"--batch-size {args.batch_size} --pause {args.pause:g}` in its own process.\n"
    )
    goals = []
    for kind, row in results.items():
        trials = row.pop("trials")
        print(
            table(
                ("batch size", "cutoff", "rows purged", "batches", "s", "rows/s"),
                [(s, f"{d}d", e, b, sec, r) for s, d, e, b, sec, r in trials],
                title=f"## {kind}: batch-size trials (no load)",
            )
        )
        print(table(("", kind), list(row.items()), title=f"## {kind}: ingestion and the purge"))
        goals.append((kind, row["during / no purge"]))
    print(
        table(
            ("db", "ingestion during / without purge", "goal", "met"),
            [(k, r, RATIO_GOAL, "yes" if r and r >= RATIO_GOAL else "NO") for k, r in goals],
            title="## goal",
        )
    )
    if args.json:
        args.json.write_text(json.dumps({"note": note, "results": results}, default=str))
    return 1 if args.check and any(not r or r < RATIO_GOAL for _, r in goals) else 0


def purge_argv(days: int, batch_size: int) -> list[str]:
    return [
        str(BIN / "flask"), "--app", "wsgi", "webhooks", "purge",
        "--older-than", f"{days}d", "--batch-size", str(batch_size),
    ]  # fmt: skip


def parse_purge(output: str, code: int) -> tuple[int, int, float]:
    match = PURGED.search(output)
    if code != 0 or not match:
        raise RuntimeError(f"purge failed (exit {code}):\n{output}")
    return int(match.group(1)), int(match.group(2)), float(match.group(3))


def due(url: str, kind: str, days: int) -> int:
    cutoff = (
        f"now() - interval '{days} days'"
        if kind == "postgresql"
        else f"datetime('now', '-{days} days')"
    )
    return sql_scalar(url, f"SELECT count(*) FROM webhook_events WHERE {DUE}{cutoff}")


if __name__ == "__main__":
    raise SystemExit(main())
