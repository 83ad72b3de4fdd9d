"""Who used the CPU during a slice of bench/purge.py, what PostgreSQL wrote meanwhile,
and what the web's database sessions waited on.

PostgreSQL's processes are told apart by their title (`postgres: user db host state`
for a backend, `postgres: 15/main: checkpointer` for the cluster's own), read from
/proc; a process that ends between two snapshots counts for what it used until the
last one.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

from common import MachineCpu, Server, _children_cpu, cpu_seconds

# The cluster's own processes that the purge's writes keep busy.
PG_BACKGROUND = ("checkpointer", "walwriter", "background writer")


def _pg_processes() -> dict[int, str]:
    """Every PostgreSQL process: pid -> its title."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if title.startswith(b"postgres:"):
                found[int(entry)] = title.decode(errors="replace")
    return found


class CpuMeter:
    """CPU-seconds by party: the web server, the load generator (this process's children),
    the purge's process and its backend, the web's backends, PostgreSQL's background
    processes, and everyone else (the machine's busy time minus all those)."""

    def __init__(self, url: str, web: Server, purge_pid: int, purge_backend: int | None) -> None:
        self.database = f" {url.rsplit('/', 1)[-1]} "
        self.web = web
        self.purge_pid = purge_pid
        self.purge_backend = purge_backend

    def snapshot(self) -> dict:
        pg = _pg_processes()
        return {
            "wall": time.monotonic(),
            "machine": MachineCpu.busy(),
            "web": sum(cpu_seconds(p, True) for p in [self.web.proc.pid, *self.web.worker_pids()]),
            "loadgen": _children_cpu(),
            "purge": cpu_seconds(self.purge_pid),
            "pids": {pid: cpu_seconds(pid) for pid in pg},
            "titles": pg,
        }

    def since(self, before: dict) -> dict[str, float]:
        now = self.snapshot()
        used = {k: now[k] - before[k] for k in ("wall", "machine", "web", "loadgen", "purge")}
        backends = {"purge backend": 0.0, "pg ingest": 0.0, "pg background": 0.0}
        for pid, title in now["titles"].items():
            delta = now["pids"][pid] - before["pids"].get(pid, 0.0)
            if pid == self.purge_backend:
                backends["purge backend"] += delta
            elif self.database in title:
                backends["pg ingest"] += delta
            elif any(name in title for name in PG_BACKGROUND):
                backends["pg background"] += delta
        used.update(backends)
        ours = sum(v for k, v in used.items() if k not in ("wall", "machine"))
        used["others"] = max(0.0, used.pop("machine") - ours)
        return used


class PgCounters:
    """The cluster's WAL position and checkpoint count (cluster-wide: others' too)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def read(self) -> dict:
        lsn, checkpoints = self.conn.execute(
            "SELECT pg_current_wal_lsn()::text, checkpoints_timed + checkpoints_req "
            "FROM pg_stat_bgwriter"
        ).fetchone()
        return {"lsn": lsn, "checkpoints": checkpoints, "t": time.monotonic()}

    def since(self, before: dict) -> dict[str, float]:
        now = self.read()
        wal = self.conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (now["lsn"], before["lsn"])
        ).fetchone()[0]
        return {
            "wal_mb": float(wal) / 1e6,
            "checkpoints": now["checkpoints"] - before["checkpoints"],
            "seconds": now["t"] - before["t"],
        }


class WaitSampler:
    """What the web's PostgreSQL backends wait on, sampled from pg_stat_activity every
    `period` seconds in a thread while a slice runs: counts of `type:event` (`CPU` when
    active and waiting on nothing), the purge's own backend left out."""

    def __init__(self, url: str, purge_backend: int | None, period: float = 0.05) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.purge_backend = purge_backend or 0
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()
        self.samples = 0

    def start(self) -> None:
        self.counts, self.samples = Counter(), 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return {"samples": self.samples, "waits": dict(self.counts)}

    def _run(self) -> None:
        query = (
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'active' "
            "AND pid NOT IN (pg_backend_pid(), %s) AND backend_type = 'client backend'"
        )
        while not self._stop.wait(self.period):
            rows = self.conn.execute(query, (self.purge_backend,)).fetchall()
            self.samples += 1
            self.counts.update(row[0] for row in rows)
