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


def pct(cpu: float, duration: float) -> str:
    return f"{100 * cpu / duration:.0f}" if duration else "-"


if __name__ == "__main__":
    sys.exit(main())
