"""Retention purge at scale: ingestion while it runs, in each of its modes, on 10^6 stored events.

    python bench/purge.py [--events 1000000] [--modes scheduler,cli,flat] [--pairs 3]
                          [--pg-database NAME] [--pg-template NAME] [--check]
    python bench/purge.py --make-template NAME    # fill a database once, to copy per run

One PostgreSQL database (`--pg-database`, default `bench_purge_<pid>`; or `--db sqlite`)
filled with bench/history.py's history (received over 180 days, so about half is older
than RETENTION_DAYS=90), or copied from `--pg-template` (a database filled before), then:

1. batch-size trials, no load: `flask webhooks purge --older-than Nd --batch-size B
   --duty 1` (flat out) for each of `--trial-sizes`, each on its own 5-day slice of the
   oldest history: rows/s per size;
2. ingestion, `POST /webhooks/mp` on the service under gunicorn (the Procfile's
   settings), closed loop, in `--slice`-second slices: blocks of `--block` purge slices
   alternate with baseline slices (no purge), every block between two baselines, with a
   `--settle` slice after each block that is not counted (the purge's deferred work,
   a checkpoint under way, lands there rather than in a baseline). During a purge
   slice bench/purge_driver.py (the service's own code, one long-lived process) purges
   in one of `--modes` for the slice's length: `scheduler` (periodic.py's retention
   task and timing, the default configuration), `cli` (`flask webhooks purge`'s
   defaults), `flat` (`--duty 1`, for reference), `duty=<d>` (another duty cycle). A
   mode's ratio is its slices' rate over the mean of their block's neighbouring
   baselines': the shared machine's drift cancels;
3. the drain: `flask webhooks purge --older-than 90d` with its defaults, in its own
   process, to the end, under load while it lasts (baseline: slices before and after):
   its rows/s, and so how long a backlog of 500,000 rows takes. The slices of 2 leave it
   little at 10^6 events: `--pairs 0` skips them, so that it drains the whole backlog.

Every slice records the CPU each party used (web workers, load generator, the purge's
process and its PostgreSQL backend, the web's backends, PostgreSQL's checkpointer/WAL
writer/background writer, everyone else), the cluster's WAL and its checkpoints.
Goal (issue 17): ingestion during the purge >= 0.8 x without, in the default
configuration (`scheduler` and `cli`, whose baselines are interleaved; the drain's ratio,
against slices before and after it, is shown beside). `--check` exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time

import common
from common import (
    BIN,
    Loader,
    Proc,
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
from purge_cpu import CpuMeter, PgCounters, WaitSampler

RATIO_GOAL = 0.8
DEFAULT_MODES = ("scheduler", "cli")  # what the goal is judged on
PURGED = re.compile(r"purged (\d+) event\(s\).*in (\d+) batch\(es\), ([\d.]+)s")
DUE = "purged_at IS NULL AND status IN ('success', 'ignored') AND processed_at < "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql", help="postgresql or sqlite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pg-database", help="the database's name (default bench_purge_<pid>)")
    parser.add_argument("--pg-template", help="copy this filled database instead of filling")
    parser.add_argument("--make-template", metavar="NAME", help="only fill NAME, and keep it")
    parser.add_argument("--trial-sizes", default="100,500,2000", help="batch sizes, no load")
    parser.add_argument("--modes", default="scheduler,cli,flat", help="purge modes in slices")
    # 3 blocks of 3 slices of the 3 modes purge nearly all the ~490,000 rows due at 10^6
    # events: the drain of the whole backlog is a run of its own, `--pairs 0`.
    parser.add_argument("--pairs", type=int, default=3, help="blocks per mode (0: none)")
    parser.add_argument("--block", type=int, default=3, help="purge slices in a row per block")
    parser.add_argument("--settle", type=int, default=1, help="uncounted slices after a block")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-during", type=int, default=80, help="most slices of the drain")
    parser.add_argument("--connections", type=int, default=32)
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if the goal is missed")
    args = parser.parse_args(argv)
    kind, modes = args.db, comma_list(args.modes) if args.pairs > 0 else []

    with Session("purge", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        loader = Loader(RequestFactory(), session.tmp, args.connections, wrk_available())
        if args.make_template:
            url = session.database("postgresql", name=args.make_template)
            session.pg_databases.remove(args.make_template)  # kept: it is the point
            Filler(url).fill_to(args.events)
            log(f"{args.make_template}: {args.events:,} events, kept (--pg-template)")
            return 0
        url = session.database(kind, name=args.pg_database, template=args.pg_template)
        env = app_env(session, url, LOG_LEVEL="WARNING")
        started = time.monotonic()
        Filler(url).fill_to(args.events)
        row: dict = {"rows": args.events, "fill s": time.monotonic() - started}
        row["due at 90d"] = due(url, kind, 90)
        log(f"{args.events:,} rows; {row['due at 90d']:,} due")

        trials = []
        for number, size in enumerate(int(x) for x in comma_list(args.trial_sizes)):
            days = 180 - 5 * (number + 1)
            proc = session.start(f"trial-{size}", [*purge_argv(days), "--batch-size", str(size),
                                                   "--duty", "1"], env)  # fmt: skip
            code = proc.popen.wait(1800)
            events, batches, seconds = parse_purge(proc.tail(), code)
            trials.append((size, f"{days}d", events, batches, seconds, events / max(seconds, 0.05)))
            log(f"batch {size}: {events:,} rows in {seconds:.1f}s")

        web = session.gunicorn("web", "wsgi:app", env)
        loader.closed(web, "warm-up", 1.0)
        driver, backend = start_driver(session, env)
        meter = CpuMeter(url, web, driver.pid, backend)
        counters = PgCounters(url)
        waits = WaitSampler(url, backend)

        def sliced(label: str, command: str | None = None) -> dict:
            """One ingestion slice, the driver purging meanwhile when `command` is given."""
            before, pg0 = meter.snapshot(), counters.read()
            waits.start()
            if command:
                driver.popen.stdin.write(f"{command} {args.slice}\n")
                driver.popen.stdin.flush()
            result = loader.closed(web, label, args.slice)
            answer = json.loads(driver.popen.stdout.readline()) if command else {}
            return {"load": result, "purge": answer, "cpu": meter.since(before),
                    "pg": counters.since(pg0), "waits": waits.stop()}  # fmt: skip

        if modes:
            log(f"slices: {', '.join(modes)}: {args.pairs} blocks of {args.block} each")
        baselines, settling = [sliced("no purge")], []
        purges: dict[str, list[tuple[dict, float]]] = {mode: [] for mode in modes}
        for _ in range(args.pairs):
            for mode in modes:
                block = [sliced(mode, mode) for _ in range(args.block)]
                # What the purge left to do (dirty pages, a checkpoint under way) lands here,
                # not in the baseline.
                settling += [sliced("settling") for _ in range(args.settle)]
                baselines.append(sliced("no purge"))
                neighbours = (baselines[-2]["load"].rate + baselines[-1]["load"].rate) / 2
                purges[mode] += [(during, neighbours) for during in block]
        driver.popen.stdin.write("quit\n")
        driver.popen.stdin.flush()
        driver.popen.wait(60)

        drain = run_drain(session, env, loader, web, args, url, kind) if args.drain else None
        row["left due at 90d"] = due(url, kind, 90)
        session.stop(web)
        session.redis().flushdb()
        end_note = environment_note()

    print(f"# Purge benchmark\n\n{note}; at the end: {end_note.split(', code')[0]}\n")
    print(
        f"{args.events:,} stored events (bench/history.py's filler), {kind}; ingestion: "
        f"{'wrk' if wrk_available() else 'python asyncio'}, {args.connections} connections, "
        f"{args.slice:g}s slices; blocks of {args.block} purge slices between baseline "
        f"slices, {args.settle} uncounted settling slice(s) after each block.\n"
    )
    print(table(("", ""), list(row.items()), title="## Database"))
    print(table(("batch size", "cutoff", "rows purged", "batches", "s", "rows/s"), trials,
                title="## Batch-size trials (no load, --duty 1)"))  # fmt: skip
    summary = [mode_row(mode, pairs, args.slice) for mode, pairs in purges.items() if pairs]
    summary.append(slices_row("no purge (all baselines)", baselines))
    if settling:
        summary.append(slices_row("settling (after a block, not counted)", settling))
    print(table(SUMMARY_HEADERS, summary, title="## Ingestion during the purge, by mode"))
    groups = {**{mode: [d for d, _ in pairs] for mode, pairs in purges.items()},
              "no purge": baselines, "settling": settling}  # fmt: skip
    waited = [(name, *wait_row(slices)) for name, slices in groups.items() if slices]
    headers = ("slices", "web's sessions active per sample", "what they were doing (share)")
    print(table(headers, waited, title="## The web's database sessions (pg_stat_activity)"))
    goals = [(mode, r[4]) for mode, r in zip(purges, summary, strict=False)
             if mode in DEFAULT_MODES]  # fmt: skip
    rows = [(k, r, RATIO_GOAL, "yes" if r and r >= RATIO_GOAL else "NO") for k, r in goals]
    if drain:
        print(table(("", ""), list(drain.items()), title="## The drain: `flask webhooks purge`"))
        ratio = drain["during / no purge"]
        rows.append(("drain (baseline before and after it, not interleaved)", ratio, "", ""))
    print(table(("purge", "ingestion during / without", "goal", "met"), rows, title="## Goal"))
    if args.json:
        results = {"note": note, "row": row, "summary": summary, "drain": drain, "trials": trials}
        args.json.write_text(json.dumps(results, default=str))
    return 1 if args.check and any(not r or r < RATIO_GOAL for _, r in goals) else 0


SUMMARY_HEADERS = (
    "mode", "slices", "req/s baseline", "req/s during", "ratio", "ratio min–max",
    "p99 ms", "rows purged", "rows/s", "purge cpu % (proc+backend)", "web+its pg cpu %",
    "pg bg cpu %", "others cpu %", "WAL MB/s", "checkpoints",
)  # fmt: skip


def mode_row(mode: str, pairs: list[tuple[dict, float]], slice_s: float) -> tuple:
    """One mode's line: its slices against their neighbouring baselines."""
    slices = [during for during, _ in pairs]
    rates = [during["load"].rate for during in slices]
    bases = [base for _, base in pairs]
    ratios = [r / b for r, b in zip(rates, bases, strict=True) if b]
    load = merge([s["load"] for s in slices], mode)
    rows = sum(s["purge"]["events"] for s in slices)
    seconds = sum(s["purge"]["seconds"] for s in slices)
    cpu = _cpu_mean(slices)
    pg = _pg_total(slices)
    return (
        mode, len(slices), sum(bases) / len(bases), load.rate, sum(rates) / sum(bases),
        f"{min(ratios):.2f}–{max(ratios):.2f}", load.p99, rows,
        rows / seconds if seconds else 0, f"{cpu['purge']:.0f} + {cpu['purge backend']:.0f}",
        f"{cpu['web']:.0f}+{cpu['pg ingest']:.0f}", cpu["pg background"], cpu["others"],
        pg["wal_mb"] / pg["seconds"], pg["checkpoints"],
    )  # fmt: skip


def slices_row(label: str, slices: list[dict]) -> tuple:
    load = merge([s["load"] for s in slices], label)
    cpu, pg = _cpu_mean(slices), _pg_total(slices)
    return (
        label, len(slices), load.rate, "", "", "", load.p99, 0, "", "0 + 0",
        f"{cpu['web']:.0f}+{cpu['pg ingest']:.0f}", cpu["pg background"], cpu["others"],
        pg["wal_mb"] / pg["seconds"], pg["checkpoints"],
    )  # fmt: skip


def wait_row(slices: list[dict]) -> tuple:
    """Mean active sessions per sample, and the top waits as shares of them."""
    samples = sum(s["waits"]["samples"] for s in slices)
    counts: dict[str, int] = {}
    for s in slices:
        for key, n in s["waits"]["waits"].items():
            counts[key] = counts.get(key, 0) + n
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    shares = ", ".join(f"{key} {n / total:.0%}" for key, n in top) if total else "—"
    return (total / samples if samples else 0.0, shares)


def _cpu_mean(slices: list[dict]) -> dict[str, float]:
    """% of one core each party used, over the slices' wall time."""
    wall = sum(s["cpu"]["wall"] for s in slices)
    keys = slices[0]["cpu"].keys()
    return {k: 100 * sum(s["cpu"][k] for s in slices) / wall for k in keys if k != "wall"}


def _pg_total(slices: list[dict]) -> dict[str, float]:
    return {k: sum(s["pg"][k] for s in slices) for k in ("wal_mb", "checkpoints", "seconds")}


def start_driver(session: Session, env: dict[str, str]) -> tuple[Proc, int | None]:
    """bench/purge_driver.py, commands on its stdin, answers on its stdout."""
    log_path = session.tmp / "purge-driver.log"
    with open(log_path, "ab") as errors:
        popen = subprocess.Popen(
            [str(BIN / "python"), str(common.BENCH / "purge_driver.py")],
            cwd=common.CODE, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
            text=True, start_new_session=True,
        )  # fmt: skip
    proc = Proc("purge-driver", popen, log_path)
    session.procs.append(proc)
    line = popen.stdout.readline()
    if not line:
        raise RuntimeError(f"purge driver failed:\n{proc.tail()}")
    return proc, json.loads(line)["backend_pid"]


def run_drain(session, env, loader, web, args, url, kind) -> dict:  # noqa: ANN001
    """`flask webhooks purge` with its defaults, to the end, under load while it runs."""
    before = [loader.closed(web, "no purge", args.slice) for _ in range(2)]
    left = due(url, kind, 90)
    log(f"drain: flask webhooks purge --older-than 90d, {left:,} rows due")
    purger = session.start("drain", purge_argv(90), env)
    during = []
    while purger.alive() and len(during) < args.max_during:
        result = loader.closed(web, "during purge", args.slice)
        if purger.alive():  # a slice the purge outlived entirely
            during.append(result)
    code = purger.popen.wait(3600)
    events, batches, seconds = parse_purge(purger.tail(), code)
    after = [loader.closed(web, "no purge", args.slice) for _ in range(2)]
    base, load = merge(before + after, "no purge"), merge(during, "during") if during else None
    return {
        "rows due at its start": left,
        "rows purged": events,
        "batches": batches,
        "seconds": seconds,
        "rows/s": events / seconds if seconds else None,
        "500,000 rows take (s)": 500_000 * seconds / events if events else None,
        "slices under load (all of it if it outlived none)": len(during),
        "ingest req/s before / after": f"{merge(before, 'b').rate:.0f} / "
        f"{merge(after, 'a').rate:.0f}",
        "ingest req/s during": load.rate if load else None,
        "during / no purge": load.rate / base.rate if load else None,
        "ingest errors": base.errors + (load.errors if load else 0),
    }


def purge_argv(days: int) -> list[str]:
    return [str(BIN / "flask"), "--app", "wsgi", "webhooks", "purge", "--older-than", f"{days}d"]


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
