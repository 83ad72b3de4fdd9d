"""Ingestion throughput and latency of `POST /webhooks/mp`, against a bare-Flask ceiling.

    python bench/ingest.py [--db sqlite,postgresql] [--duration 10] [--check]

The machine is shared and noisy, so only ratios to a ceiling measured in the
same run mean anything, and every target is measured in slices that alternate
with slices of the ceiling (both gunicorns run side by side; the idle one costs
nothing), so that both see the same noise:

1. the ceiling, bench/bare_app.py (parse the JSON, answer 200), under gunicorn
   with the Procfile's settings: a calibration (closed loop, wrk, 32 connections)
   (only reported: every target has its own paired ceiling);
2. per database (a fresh, migrated PostgreSQL database / SQLite file):
   - the variants (bench/variants_app.py): parse+verify, +LPUSH, +enqueue,
     +store, +store+enqueue, each closed loop, to show where the cost is;
   - the service itself (`gunicorn wsgi:app`), closed loop, then open loop at
     `--open-fraction` (0.5) of its paired ceiling's rate (alternating with the
     ceiling at the same rate), then at half its own closed-loop rate; its
     workers' peak RSS; rows stored and jobs queued.

Every request is a signed, unique MercadoPago Webhooks notification. Goals (the
issue's): the service's closed-loop rate >= 0.5 x the ceiling's; its p99 < 25 ms
at the open-loop rate; zero errors. `--check` exits 1 when one is missed.

`--accounts 1,100` (issue 18) measures instead the service with 1 account and with N,
in `--rounds` alternated rounds (closed loop only, each paired with the ceiling as
above): per count a database and a service of its own; 1 is the single-account service
of before (the default account, `/webhooks/mp`, nothing else in the `accounts` table);
N is N accounts created through the Account model (secrets encrypted), the load spread
over their URLs (`/webhooks/mp/<slug>`, request k to account k mod N), each request
signed with its account's secret. Reported: each count's rate x its paired ceiling, and
N accounts / 1 account per round. Goal: >= 0.9, zero errors.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from common import (
    BENCH,
    GUNICORN_ARGS,
    QUEUE,
    Loader,
    LoadResult,
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    base_env,
    check_signature_helper,
    comma_list,
    create_accounts,
    environment_note,
    log,
    memory_mb,
    merge,
    py_spy,
    sql_scalar,
    summarise_profile,
    table,
    wrk_available,
)

VARIANTS = ("parse", "lpush", "enqueue", "store", "store_enqueue")
PROTOTYPES = ("store_core", "store_min_lpush", "store_lpush")  # see bench/variants_app.py
P99_GOAL_MS = 25.0
RATIO_GOAL = 0.5
ACCOUNTS_GOAL = 0.9  # N accounts / 1 account (issue 18)
HEADERS = (
    "target",
    "load",
    "req/s",
    "paired ceiling req/s",
    "x ceiling",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "gen late p99 ms",
    "server cpu %",
    "loadgen cpu %",
    "others cpu %",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--slices", type=int, default=4, help="slices per target (interleaved)")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per closed slice")
    parser.add_argument("--open-slice", type=float, default=4.0, help="seconds per open slice")
    parser.add_argument("--open-fraction", type=float, default=0.5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-variants", action="store_true", help="only ceiling + service")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"which variants (also the prototypes {', '.join(PROTOTYPES)})",
    )
    parser.add_argument(
        "--web-args",
        default=" ".join(GUNICORN_ARGS),
        help="gunicorn settings for the service and variants (default: the Procfile's)",
    )
    parser.add_argument(
        "--ceiling-args",
        default=" ".join(GUNICORN_ARGS),
        help="gunicorn settings for the ceiling (default: the Procfile's)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the service's workers")
    parser.add_argument(
        "--accounts",
        help="e.g. 1,100: compare the service with 1 account and with N, alternated rounds",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --accounts")
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)

    kinds = comma_list(args.db)
    web_args = shlex.split(args.web_args)
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())
    if args.loadgen == "wrk" and not wrk_available():
        parser.error("wrk is not installed (apt-get install wrk), use --loadgen python")
    factory = RequestFactory()
    rows: list[tuple[LoadResult, float]] = []  # (result, paired ceiling rate)
    service: dict[str, tuple[LoadResult, float, LoadResult, LoadResult]] = {}
    extra: dict[str, dict] = {}
    profiles: dict[str, str] = {}

    with Session("ingest", args.redis_url, keep=args.keep, tree=args.tree) as session:
        check_signature_helper()
        note = environment_note()
        log(note)

        loader = Loader(factory, session.tmp, args.connections, use_wrk)

        def paired(server, label, prefix, estimate):
            result, ceiling = loader.paired(
                bare, server, label, args.slices, args.slice, prefix, estimate
            )
            rows.append((result, ceiling.rate))
            return result, ceiling

        bare = session.gunicorn(
            "bare", "bare_app:app", base_env(session), args=shlex.split(args.ceiling_args)
        )
        loader.closed(bare, "warm-up", 1.0)
        log("ceiling: calibration")
        calibration = merge(
            [loader.closed(bare, "ceiling", args.slice) for _ in range(2)], "ceiling"
        )
        ceiling0 = calibration.rate
        rows.append((calibration, ceiling0))
        calibration.label = "ceiling (bare Flask), calibration"

        if args.accounts:
            counts = [int(n) for n in comma_list(args.accounts)]
            found = compare_accounts(session, loader, bare, ceiling0, kinds, counts, args)
            return report_accounts(note, found, counts, args, use_wrk)

        for kind in kinds:
            url = session.database(kind)
            env = app_env(session, url)
            if not args.no_variants:
                server = session.gunicorn(
                    f"variants-{kind}", "variants_app:app", env, args=web_args
                )
                # store_lpush's dispatcher (bench/variants_app.py), on the same machine.
                dispatcher = session.start(
                    f"dispatcher-{kind}", [sys.executable, str(BENCH / "variants_app.py")], env
                )
                for variant in comma_list(args.variants):
                    log(f"{kind}: variant {variant} (paired with the ceiling)")
                    paired(server, f"{kind}: {variant}", f"/bench/{variant}", ceiling0)
                session.stop(dispatcher)
                session.stop(server)
                session.redis().flushdb()
            before = sql_scalar(url, "SELECT count(*) FROM webhook_events")
            server = session.gunicorn(f"web-{kind}", "wsgi:app", env, args=web_args)
            log(f"{kind}: service, closed loop (paired with the ceiling)")
            label = f"{kind}: SERVICE /webhooks/mp"
            if args.profile:
                with py_spy(server.worker_pids(), session.tmp, f"ingest-{kind}") as files:
                    result, ceiling = paired(server, label + " (py-spy on)", "", ceiling0)
                time.sleep(1)
                profiles[kind] = summarise_profile(files)
            else:
                result, ceiling = paired(server, label, "", ceiling0)
            rate = args.open_fraction * ceiling.rate
            log(f"{kind}: service, open loop at {rate:,.0f}/s (alternating with the ceiling)")
            mine, theirs = [], []
            for _ in range(max(1, args.slices // 2)):
                theirs.append(loader.open(bare, "ceiling (bare Flask)", rate, args.open_slice))
                mine.append(loader.open(server, label, rate, args.open_slice))
            open_ceiling, open_service = merge(theirs, "ceiling (bare Flask)"), merge(mine, label)
            rows += [(open_ceiling, ceiling0), (open_service, ceiling0)]
            # Also below saturation: half of the service's own closed-loop rate.
            own = args.open_fraction * result.rate
            log(f"{kind}: service, open loop at {own:,.0f}/s (half its own capacity)")
            own_result = merge(
                [loader.open(server, label, own, args.open_slice) for _ in range(2)], label
            )
            rows.append((own_result, ceiling0))
            service[kind] = (result, ceiling.rate, open_service, open_ceiling, rate)
            peaks = [memory_mb(pid)[1] for pid in server.worker_pids()]
            session.stop(server)
            stored = sql_scalar(url, "SELECT count(*) FROM webhook_events") - before
            extra[kind] = {
                "web worker peak RSS MB": max((p for p in peaks if p is not None), default=None),
                "rows stored by the service (incl. warm-up)": stored,
                "jobs queued": session.redis().llen(f"rq:queue:{QUEUE}"),
                "2xx answers (excl. warm-up)": result.ok + open_service.ok + own_result.ok,
                f"open loop at {own:,.0f}/s (half its own rate): p50 / p99 ms": (
                    f"{own_result.p50:.1f} / {own_result.p99:.1f}"
                ),
            }
            session.redis().flushdb()

    print(f"# Ingestion benchmark\n\n{note}\n")
    print(
        f"ceiling: gunicorn {args.ceiling_args}; service and variants: "
        f"gunicorn {' '.join(web_args)}; closed loop: "
        f"{'wrk' if use_wrk else 'python asyncio'}, {args.connections} connections, "
        f"{args.slices} slices of {args.slice:g}s per target, alternating with slices of the "
        f"ceiling (the 'paired ceiling'); open loop: python asyncio, fixed rate "
        f"= {args.open_fraction:g} x the service's paired ceiling, "
        f"{max(1, args.slices // 2)} x {args.open_slice:g}s slices alternating with the "
        "ceiling at the same rate; latency counted from the scheduled send time.\n"
    )
    print(
        table(
            HEADERS,
            [
                [
                    r.label,
                    r.mode + (f" @{r.target_rate:,.0f}/s" if r.target_rate else ""),
                    r.rate,
                    c if r.mode == "closed" else None,
                    r.rate / c if r.mode == "closed" and c else None,
                    r.p50,
                    r.p99,
                    r.max,
                    r.errors,
                    r.late_ms_p99,
                    pct(r.server_cpu, r.duration),
                    pct(r.loadgen_cpu, r.duration),
                    pct(r.others_cpu, r.duration),
                ]
                for r, c in rows
            ],
        )
    )
    for kind, info in extra.items():
        print(table(("", kind), list(info.items())))
    goals = []
    for kind in kinds:
        result, ceiling, open_service, open_ceiling, rate = service[kind]
        errors = result.errors
        achieved = open_service.rate / rate if rate else 0
        goals += [
            (
                kind,
                f"throughput >= {RATIO_GOAL} x ceiling",
                f"{result.rate / ceiling:.2f}",
                result.rate / ceiling >= RATIO_GOAL,
            ),
            (
                kind,
                f"p99 < {P99_GOAL_MS:g} ms at {rate:,.0f}/s",
                f"{open_service.p99:.1f} ms ({achieved:.0%} of the rate; ceiling's p99 "
                f"{open_ceiling.p99:.1f} ms)",
                open_service.p99 < P99_GOAL_MS and achieved > 0.95,
            ),
            (kind, "zero errors (closed loop)", str(errors), errors == 0),
        ]
    print(
        table(("db", "goal", "measured", "met"), [(*g[:3], "yes" if g[3] else "NO") for g in goals])
    )
    for kind, text in profiles.items():
        print(f"## profile of the service's gunicorn workers ({kind})\n\n{text}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "note": note,
                    "rows": [
                        {
                            **{k: v for k, v in vars(r).items() if k != "latencies_ms"},
                            "paired_ceiling": c,
                        }
                        for r, c in rows
                    ],
                    "extra": extra,
                },
                indent=2,
                default=str,
            )
        )
    missed = [g for g in goals if not g[3]]
    return 1 if args.check and missed else 0


def compare_accounts(session, loader, bare, ceiling0, kinds, counts, args) -> list[dict]:  # noqa: ANN001
    """Per database: a service per account count, measured in alternated rounds."""
    found = []
    for kind in kinds:
        targets = {}
        for n in counts:
            url = session.database(kind, tag=f"_{n}acc")
            env = app_env(session, url)
            if n == 1:
                factory = RequestFactory()  # the default account: /webhooks/mp
            else:
                log(f"{kind}: creating {n} accounts")
                slugs = [f"acct-{i + 1}" for i in range(n)]
                factory = RequestFactory(accounts=create_accounts(session, url, slugs))
            server = session.gunicorn(
                f"web-{kind}-{n}acc", "wsgi:app", env, args=shlex.split(args.web_args)
            )
            mine = Loader(factory, session.tmp, args.connections, loader.use_wrk)
            targets[n] = (server, mine, url)
        for round_ in range(args.rounds):
            for n in counts if round_ % 2 == 0 else counts[::-1]:
                server, mine, _url = targets[n]
                log(f"{kind}: {n} account(s), round {round_ + 1} (paired with the ceiling)")
                result, ceiling = mine.paired(
                    bare, server, f"{kind}: {n} account(s)", args.slices, args.slice, "", ceiling0
                )
                found.append(
                    {"db": kind, "accounts": n, "round": round_ + 1, "result": result,
                     "ceiling": ceiling.rate}
                )  # fmt: skip
        for n, (server, _mine, url) in targets.items():
            session.stop(server)
            stored = sql_scalar(url, "SELECT count(DISTINCT account_id) FROM webhook_events")
            log(f"{kind}: {n} account(s): events stored for {stored} account(s)")
    return found


def report_accounts(note: str, found: list[dict], counts: list[int], args, use_wrk) -> int:  # noqa: ANN001
    """The --accounts tables; the exit code."""
    print(f"# Ingestion benchmark: 1 account vs N (issue 18)\n\n{note}\n")
    print(
        f"service: gunicorn {args.web_args}; closed loop: {'wrk' if use_wrk else 'python'}, "
        f"{args.connections} connections, {args.slices} slices of {args.slice:g}s per count and "
        "round, alternating with slices of the ceiling (bare Flask). 1 account: "
        "`/webhooks/mp` (the default account alone); N: N accounts' `/webhooks/mp/<slug>` in "
        "turn, each signed with its account's secret.\n"
    )
    headers = ("db", "accounts", "round", "req/s", "paired ceiling req/s", "x ceiling",
               "p50 ms", "p99 ms", "errors", "server cpu %", "others cpu %")  # fmt: skip
    rows = []
    for f in found:
        r = f["result"]
        rows.append(
            (f["db"], f["accounts"], f["round"], r.rate, f["ceiling"], r.rate / f["ceiling"],
             r.p50, r.p99, r.errors, pct(r.server_cpu, r.duration), pct(r.others_cpu, r.duration))
        )  # fmt: skip
    print(table(headers, rows))
    goals, base = [], counts[0]
    for kind in dict.fromkeys(f["db"] for f in found):
        mine = [f for f in found if f["db"] == kind]
        for n in counts[1:]:
            ratios = []
            for round_ in sorted({f["round"] for f in mine}):
                x = {f["accounts"]: f["result"].rate / f["ceiling"] for f in mine
                     if f["round"] == round_}  # fmt: skip
                ratios.append(x[n] / x[base])
            pooled = _pooled(mine, n) / _pooled(mine, base)
            errors = sum(f["result"].errors for f in mine)
            goals.append(
                (kind, f"{n} accounts / {base}: x ceiling, per round (pooled)",
                 " / ".join(f"{r:.2f}" for r in ratios) + f" ({pooled:.2f}); errors {errors}",
                 pooled >= ACCOUNTS_GOAL and errors == 0)
            )  # fmt: skip
    marks = [(*g[:3], "yes" if g[3] else "NO") for g in goals]
    print(table(("db", f"goal: >= {ACCOUNTS_GOAL}, zero errors", "measured", "met"), marks))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"note": note, "rows": [
                    {**{k: v for k, v in f.items() if k != "result"},
                     **{k: v for k, v in vars(f["result"]).items() if k != "latencies_ms"}}
                    for f in found
                ]},
                indent=2,
                default=str,
            )
        )  # fmt: skip
    return 1 if args.check and not all(g[3] for g in goals) else 0


def _pooled(found: list[dict], n: int) -> float:
    """All rounds' requests of a count over its paired ceilings' (rate-weighted)."""
    mine = [f for f in found if f["accounts"] == n]
    rate = sum(f["result"].ok for f in mine) / sum(f["result"].duration for f in mine)
    return rate / (sum(f["ceiling"] for f in mine) / len(mine))


def pct(cpu: float, duration: float) -> str:
    return f"{100 * cpu / duration:.0f}" if duration else "-"


if __name__ == "__main__":
    sys.exit(main())
