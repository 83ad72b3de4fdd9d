"""The retention purge in slices, for bench/purge.py: the service's own code, one process.

    python bench/purge_driver.py    (the app's environment: DATABASE_URL, REDIS_URL …)

Reads one command per line on stdin, `<mode> <seconds>`, purges in that mode for
that long, and answers one JSON line (events purged, batches, seconds in batches,
its own CPU-seconds and its PostgreSQL backend's pid). `quit` ends it. Modes:

- `scheduler`: scheduler.py's retention task as periodic.run_forever runs it: the
  Task of periodic.build_tasks (rounds of RETENTION_ROUND_SECONDS at RETENTION_DUTY,
  the next round due per the task's `after`), polled as the loop polls (0.05–1 s
  sleeps). The loop's other tasks are left out: they would only space the rounds;
- `cli`: `flask webhooks purge` with its defaults (retention.purge at RETENTION_DUTY,
  RETENTION_BATCH_SIZE), stopped at the slice's end by `max_seconds`;
- `flat`: the same flat out (`--duty 1`), what the duty cycle is measured against;
- `duty=<d>`: the same at duty cycle `d` (another RETENTION_DUTY).

A round or batch under way at the slice's end finishes before the answer, so no
purge work spills into the next (baseline) slice.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

from sqlalchemy import text

from webhooks_app import create_app
from webhooks_app.extensions import db
from webhooks_app.periodic import build_tasks
from webhooks_app.queueing import get_redis
from webhooks_app.retention import PurgeReport, purge
from webhooks_app.timeutil import utcnow

DAYS = 90


def main() -> int:
    app = create_app()
    with app.app_context():
        (task,) = [t for t in build_tasks(app, get_redis(app)) if t.name == "retention"]
        reports: list[PurgeReport] = []
        plain_run = task.run

        def recorded() -> object:  # the task's own function, its reports kept for the answer
            report = plain_run()
            if isinstance(report, PurgeReport):
                reports.append(report)
            return report

        task.run = recorded
        backend = db.session.scalar(text("SELECT pg_backend_pid()"))
        db.session.remove()
        print(json.dumps({"ready": True, "backend_pid": backend}), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            mode, seconds = words[0], float(words[1])
            backend = db.session.scalar(text("SELECT pg_backend_pid()"))
            db.session.commit()
            reports.clear()
            cpu0, started = time.process_time(), time.monotonic()
            if mode == "scheduler":
                deadline = started + seconds
                while time.monotonic() < deadline:
                    if time.monotonic() >= task.next_run:
                        try:
                            delay = task.delay(task.run())
                        finally:
                            db.session.remove()
                        task.next_run = time.monotonic() + delay
                    wait = min(task.next_run, deadline) - time.monotonic()
                    time.sleep(max(0.05, min(wait, 1.0)))
            else:
                cutoff = utcnow() - timedelta(days=DAYS)
                duty = 1.0 if mode == "flat" else None
                if mode.startswith("duty="):
                    duty = float(mode.removeprefix("duty="))
                reports.append(purge(cutoff, max_seconds=seconds, duty=duty))
                db.session.remove()
            answer = {
                "mode": mode,
                "seconds": time.monotonic() - started,
                "events": sum(r.events for r in reports),
                "payments": sum(r.payments for r in reports),
                "batches": sum(r.batches for r in reports),
                "busy": sum(r.busy for r in reports),
                "rounds": len(reports),
                "cpu": time.process_time() - cpu0,
                "backend_pid": backend,
            }
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
