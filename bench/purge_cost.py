"""What one retention batch costs, no load: wall time, CPU on both sides, WAL, checkpoints.

    python bench/purge_cost.py --pg-template NAME [--batches 200] [--batch-size 500]
                               [--rounds 2] [--session-sql "SET wal_compression = lz4"]

A diagnostic with no goal. Each round copies `--pg-template` (a database filled by
bench/purge.py or bench/history.py's filler: 10^6 events, half of them due at 90 days)
and runs `--batches` purge batches of the measured tree's own code back to back (flat
out) in one child process, then prints per batch: wall time (mean, median, p90), the
child's CPU (Python) and its PostgreSQL backend's, the WAL written (the cluster's: other
writers count too), checkpoints started meanwhile, and rows/s. It runs the code of
`--tree` whether its batch is `retention_batch.purge_batch` (one statement on
PostgreSQL) or the older `retention.purge_batch`, so before/after pairs are two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = "--child"


def main(argv: list[str] | None = None) -> int:
    import common
    from common import BIN, Session, add_common_arguments, environment_note, log, table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-template", required=True, help="a filled database to copy")
    parser.add_argument("--pg-database", help="the copy's name (default bench_purgecost_<pid>)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--session-sql", default="", help="run first on the purge's session")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    rows = []
    with Session("purgecost", args.redis_url, tree=args.tree) as session:
        note = environment_note()
        log(note)
        for number in range(args.rounds):
            url = session.database("postgresql", name=args.pg_database, template=args.pg_template)
            time.sleep(5)  # the copy's own writes settle
            env = dict(os.environ, PYTHONPATH=str(common.CODE))
            argv_ = [str(BIN / "python"), __file__, CHILD, url, str(args.batches),
                     str(args.batch_size), args.session_sql]  # fmt: skip
            out = subprocess.run(argv_, cwd=common.CODE, env=env, capture_output=True,
                                 text=True, timeout=1800, check=True)  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            rows.append((number + 1, *result.values(), load))
            log(f"round {number + 1}: {result}")
    print(f"# Purge batch cost\n\n{note}\n")
    print(f"{args.batches} batches of {args.batch_size}, flat out, no load, on copies of "
          f"`{args.pg_template}`; session: `{args.session_sql or 'defaults'}`.\n")  # fmt: skip
    headers = ("round", "wall ms/batch", "median", "p90", "python cpu ms", "backend cpu ms",
               "WAL MB/batch", "checkpoints", "rows/s", "load after")  # fmt: skip
    print(table(headers, rows, title="## Per batch"))
    return 0


def child(url: str, batches: int, size: int, session_sql: str) -> None:
    """Run in the measured tree: `batches` batches, then one JSON line of figures."""
    from datetime import timedelta

    from sqlalchemy import text

    from webhooks_app import create_app
    from webhooks_app.config import normalise_database_url
    from webhooks_app.extensions import db
    from webhooks_app.timeutil import utcnow

    app = create_app("development", {"SQLALCHEMY_DATABASE_URI": normalise_database_url(url)})
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    with app.app_context():
        cutoff = utcnow() - timedelta(days=90)
        try:
            from webhooks_app.retention_batch import purge_batch

            def run() -> None:
                purge_batch(cutoff, size)
        except ImportError:  # before the one-statement batch
            from webhooks_app import retention

            where, report = retention._due(cutoff, False), retention.PurgeReport(cutoff)

            def run() -> None:
                retention.purge_batch(where, cutoff, size, report)

        if session_sql:
            db.session.execute(text(session_sql))
        backend = db.session.scalar(text("SELECT pg_backend_pid()"))
        counters = (
            "SELECT pg_current_wal_lsn(), checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"  # noqa: E501
        )
        lsn0, checkpoints0 = db.session.execute(text(counters)).one()
        db.session.commit()
        walls = []
        wall0, cpu0, backend0 = time.monotonic(), time.process_time(), cpu(backend)
        for _ in range(batches):
            started = time.monotonic()
            run()
            walls.append(time.monotonic() - started)
        wall, python = time.monotonic() - wall0, time.process_time() - cpu0
        backend_cpu = cpu(backend) - backend0
        lsn1, checkpoints1 = db.session.execute(text(counters)).one()
        wal = db.session.scalar(text("SELECT pg_wal_lsn_diff(:a, :b)"), {"a": lsn1, "b": lsn0})
        db.session.commit()
    walls.sort()
    figures = {
        "wall": 1000 * wall / batches,
        "median": 1000 * walls[batches // 2],
        "p90": 1000 * walls[int(batches * 0.9)],
        "python": 1000 * python / batches,
        "backend": 1000 * backend_cpu / batches,
        "wal": float(wal) / 1e6 / batches,
        "checkpoints": checkpoints1 - checkpoints0,
        "rows_per_s": batches * size / wall,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        raise SystemExit(main())
