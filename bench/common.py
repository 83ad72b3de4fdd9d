"""Shared helpers for the benchmarks in bench/: processes, databases, load, tables.

Every benchmark script imports this module (it sits beside them, so `python
bench/<name>.py` finds it). Nothing here talks to anything but loopback.

- Processes are started in their own session and stopped by their pid (SIGTERM,
  then SIGKILL after a timeout); their children (gunicorn's workers, RQ's
  work-horses) are found under /proc and stopped by pid too.
- Databases are private: a PostgreSQL database named `bench_<purpose>_<pid>`
  (dropped at the end) or a SQLite file in a temporary folder; Redis is db 14
  by default (flushed at the start and the end; never db 15 or 11, the tests').
- Load comes from wrk (closed loop, if installed) or from the asyncio load
  generator below (closed or open loop), in separate processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
SECRET = "bench-webhook-secret"
API_TOKEN = "bench-api-token"
QUEUE = "bench-webhooks"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
# Where the service's code is taken from: a `git archive` export of a commit
# (default HEAD: other developers edit the work tree while benchmarks run), or the
# work tree itself (`--tree worktree`). Set by Session.__enter__.
CODE = ROOT
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def procfile_gunicorn_args(procfile: Path = ROOT / "Procfile") -> tuple[str, ...]:
    """gunicorn's settings from the Procfile's `web` line, `${VAR:-default}`s at their
    defaults, without the app and `--bind` (the port is ours)."""
    line = next(
        line.split(":", 1)[1]
        for line in procfile.read_text().splitlines()
        if line.startswith("web:")
    )
    words = shlex.split(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line))
    args = words[words.index("wsgi:app") + 1 :]
    if "--bind" in args:
        del args[args.index("--bind") : args.index("--bind") + 2]
    return tuple(args)


# gunicorn as in the Procfile's `web` line.
GUNICORN_ARGS = procfile_gunicorn_args()


# --------------------------------------------------------------------------- output


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A fixed-width text table (also valid Markdown)."""
    rows = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    text = "\n".join([line, rule, *body])
    return f"{title}\n\n{text}\n" if title else text + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def add_common_arguments(parser: Any, *, json_output: bool = True) -> None:
    """The options every script here takes: its Redis db, the code to measure (and --json)."""
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--tree", default="head", help="code to measure: head (default), a commit, or worktree"
    )
    if json_output:
        parser.add_argument("--json", type=Path, help="also write the results here")


def comma_list(text: str) -> list[str]:
    """Split "sqlite, postgresql" into ["sqlite", "postgresql"], dropping empty items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def environment_note() -> str:
    """One line saying when, where and on what code a benchmark ran."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (shared), load {load}"
    if CODE != ROOT:
        return f"{when}, code: commit {TREE_COMMIT} (exported with git archive)"
    head = _git("rev-parse", "--short", "HEAD") or "?"
    dirty = _git("status", "--porcelain", "--", "webhooks_app", "wsgi.py", "worker.py")
    fingerprint = hashlib.sha256(
        (_git("diff", "HEAD", "--", "webhooks_app", "wsgi.py", "worker.py") or "").encode()
        + "".join(
            Path(ROOT / p.split()[-1]).read_text(errors="replace")
            for p in (dirty or "").splitlines()
            if p.startswith("??") and Path(ROOT / p.split()[-1]).is_file()
        ).encode()
    ).hexdigest()[:10]
    state = f"HEAD {head}" + (f" + uncommitted changes (diff {fingerprint})" if dirty else "")
    return f"{when}, code: work tree at {state}"


TREE_COMMIT = ""


def use_tree(spec: str, dest: Path) -> Path:
    """Point CODE (and this process's imports) at the code to measure; return it."""
    global CODE, TREE_COMMIT
    if spec == "worktree":
        CODE = ROOT
    else:
        sha = _git("rev-parse", "--verify", f"{'HEAD' if spec == 'head' else spec}^{{commit}}")
        if not sha:
            raise SystemExit(f"unknown commit {spec!r}")
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "archive", sha], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait(60):
            raise SystemExit(f"git archive {sha} failed")
        CODE, TREE_COMMIT = dest, sha[:10]
    if str(CODE) not in sys.path:
        sys.path.insert(0, str(CODE))
    return CODE


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """utime + stime of a live process (plus its waited-for children's, if asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def memory_mb(pid: int) -> tuple[float | None, float | None]:
    """(current RSS, peak RSS = VmHWM) in MB, or (None, None) if gone."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return None, None
    return values.get("VmRSS"), values.get("VmHWM")


class MachineCpu:
    """Busy CPU-seconds of the whole machine, to tell how much others used meanwhile."""

    @staticmethod
    def busy() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def tree(self) -> list[int]:
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def cpu(self) -> float:
        """CPU-seconds of the process, its live descendants and its waited-for children."""
        return cpu_seconds(self.pid, with_children=True) + sum(
            cpu_seconds(p, with_children=True) for p in descendants(self.pid)
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal the process by pid, wait, then SIGKILL it and any child left, by pid."""
        if not self.alive():
            return
        kids = descendants(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) did not stop in {timeout}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)
        deadline = time.monotonic() + 5
        for kid in kids:
            while Path(f"/proc/{kid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{kid}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)


class Session:
    """Owns every process, database and temporary folder a benchmark creates.

    Use as a context manager: whatever happens (error, Ctrl-C, SIGTERM) they are
    stopped and removed on the way out.
    """

    def __init__(
        self, purpose: str, redis_url: str = DEFAULT_REDIS, keep: bool = False, tree: str = "head"
    ) -> None:
        self.purpose = purpose
        self.tree = tree
        self.redis_url = redis_url
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{purpose}-"))
        self.procs: list[Proc] = []
        self.pg_databases: list[str] = []
        self._redis = None
        # Every process of the session encrypts and reads account secrets with this key.
        self.account_key = base64.urlsafe_b64encode(os.urandom(32)).decode()

    def __enter__(self) -> Session:
        signal.signal(signal.SIGTERM, _raise_exit)
        if self.redis_url.rstrip("/").endswith(("/15", "/11")):
            raise SystemExit(
                "Redis dbs 15 and 11 belong to the test-suite (bin/test): use another (--redis-url)"
            )
        self.redis().flushdb()
        use_tree(self.tree, self.tmp / "code")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as error:  # noqa: BLE001 - keep cleaning up
                log(f"could not stop {proc.name}: {error}")
        for name in self.pg_databases:
            try:
                drop_pg_database(name)
            except Exception as error:  # noqa: BLE001 - keep cleaning up
                log(f"could not drop database {name}: {error}")
        with contextlib.suppress(Exception):
            self.redis().flushdb()
        if self.keep:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def redis(self):
        if self._redis is None:
            from redis import Redis

            self._redis = Redis.from_url(self.redis_url)
        return self._redis

    # -- processes

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> Proc:
        log_path = self.tmp / f"{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd or CODE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc | Server, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc = proc.proc if isinstance(proc, Server) else proc
        proc.stop(sig, timeout)
        if proc in self.procs:
            self.procs.remove(proc)

    def gunicorn(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        port: int | None = None,
        args: Sequence[str] = GUNICORN_ARGS,
    ) -> Server:
        port = port or free_port()
        argv = [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", *args]
        proc = self.start(name, argv, env)
        server = Server(proc, f"http://127.0.0.1:{port}", port)
        wait_http(server.url + "/healthz", proc, timeout=60)
        # Both workers must be up before measuring.
        deadline = time.monotonic() + 30
        wanted = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
        while len(children(proc.pid)) < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        return server

    def sandbox(self, rate_limit: str | None = None) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "webhooks_app.sandbox", "--port", str(port)]
        argv += ["--log-level", "WARNING"]
        if rate_limit:
            argv += ["--rate-limit", rate_limit]
        proc = self.start("sandbox", argv, base_env(self))
        server = Server(proc, f"http://127.0.0.1:{port}", port)
        wait_http(server.url + "/_sandbox/health", proc, timeout=30)
        return server

    # -- databases

    def database(
        self, kind: str, tag: str = "", name: str | None = None, template: str | None = None
    ) -> str:
        """A fresh, migrated database of `kind` (sqlite or postgresql); returns its URL.

        PostgreSQL: named `name` (default `bench_<purpose><tag>_<pid>`), a copy of
        `template` if given (an already filled database: no fill needed); dropped at the
        end either way."""
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp / f'bench{tag}.db'}"
        elif kind == "postgresql":
            name = name or f"bench_{self.purpose}{tag}_{os.getpid()}"
            create_pg_database(name, template)
            self.pg_databases.append(name)
            url = f"{PG_SERVER}/{name}"
        else:
            raise SystemExit(f"unknown database kind {kind!r}")
        migrate(url, self)
        return url


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@dataclass
class Server:
    proc: Proc
    url: str
    port: int

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not answering {url} after {timeout}s:\n{proc.tail()}")


def post_json(url: str, body: object, timeout: float = 120) -> Any:
    """POST `body` as JSON (to the sandbox's control routes); return the decoded answer."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def store_payment_events(
    app: Any, sandbox_url: str, n: int, account_ids: Sequence[int] = ()
) -> list[int]:
    """Store `n` events about new approved sandbox payments; return their ids.

    `store_event` commits each event and queues its first attempt, exactly as the
    webhook endpoint does (RQ may be suspended meanwhile, so that nothing runs yet).
    With `account_ids`, event k is account_ids[k mod len]'s (its queue, its settings).
    """
    from webhooks_app.extensions import db
    from webhooks_app.ingest import store_event
    from webhooks_app.notifications import Notification

    payments = post_json(sandbox_url + "/_sandbox/payments", [{"status": "approved"}] * n)
    ids = []
    with app.app_context():
        for k, payment in enumerate(payments):
            payment_id = str(payment["id"])
            body = {
                "id": uuid.uuid4().int % 10**12,
                "type": "payment",
                "action": "payment.updated",
                "data": {"id": payment_id},
            }
            stored = store_event(
                Notification(
                    source="webhook",
                    webhook_id=f"mp:{body['id']}",
                    type="payment",
                    action="payment.updated",
                    resource_id=payment_id,
                    payload=body,
                    raw_body=json.dumps(body),
                    headers={"content-type": "application/json"},
                    query={"data.id": payment_id, "type": "payment"},
                    # Only then: the code before accounts (--tree) has no such field.
                    **({"account_id": account_ids[k % len(account_ids)]} if account_ids else {}),
                )
            )
            if not (stored.created and stored.queued):
                raise RuntimeError(f"event not stored and queued: {stored}")
            ids.append(stored.id)
        db.session.remove()
    return ids


def base_env(session: Session, **extra: str) -> dict[str, str]:
    """The environment of every process we start: development config, our Redis and secret."""
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "development",
            "REDIS_URL": session.redis_url,
            "MP_WEBHOOK_SECRET": SECRET,
            "API_TOKEN": API_TOKEN,
            "RQ_QUEUE_NAME": QUEUE,
            "LOG_FILE": str(session.tmp / "webhook.log"),
            "CATCH_UP_INTERVAL": "0",
            "ACCOUNT_SECRET_KEYS": session.account_key,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(CODE), str(BENCH), env.get("PYTHONPATH")])
            ),
        }
    )
    env.update(extra)
    return env


def app_env(session: Session, database_url: str, **extra: str) -> dict[str, str]:
    return base_env(session, DATABASE_URL=database_url, **extra)


def migrate(url: str, session: Session) -> None:
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=CODE,
        env=app_env(session, url),
        check=True,
        capture_output=True,
        timeout=180,
    )


def _pg_admin():
    import psycopg

    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=10)


def create_pg_database(name: str, template: str | None = None) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{copy}')


def drop_pg_database(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def sql_scalar(url: str, query: str) -> Any:
    """Run one query against a bench database (sqlite3 or psycopg) and return the first cell."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(query).fetchone()[0]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute(query).fetchone()[0]


def sql_rows(url: str, query: str) -> list[tuple]:
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute(query).fetchall()


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class BenchAccount:
    """An account created by bench/make_accounts.py (its secret in clear, for signing)."""

    id: int
    slug: str
    secret: str
    location: str


def create_accounts(session: Session, url: str, slugs: Sequence[str]) -> list[BenchAccount]:
    """Create accounts `slugs` in the database `url` through the service's Account model (in
    the session's environment: the same ACCOUNT_SECRET_KEYS as the processes under test)."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "make_accounts.py"), *slugs],
        cwd=CODE,
        env=app_env(session, url, LOG_LEVEL="WARNING"),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = done.stdout.strip().splitlines()[-1]
    return [BenchAccount(**item) for item in json.loads(line)]


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    path: str
    request_id: str
    signature: str
    body: str

    def raw(self, host: str, path_prefix: str = "") -> bytes:
        body = self.body.encode()
        path = path_prefix + self.path if path_prefix else self.path
        return (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"x-request-id: {self.request_id}\r\nx-signature: {self.signature}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body


class RequestFactory:
    """Signed, unique MercadoPago Webhooks notifications (tests/conftest.py's shape).

    With `accounts`, request n goes to account n mod len(accounts): its URL
    (`/webhooks/mp/<slug>`), signed with its secret; else to `/webhooks/mp`, signed with
    `secret` (the default account's, MP_WEBHOOK_SECRET)."""

    def __init__(
        self,
        payment_ids: Sequence[str] | None = None,
        secret: str = SECRET,
        accounts: Sequence[BenchAccount] = (),
    ) -> None:
        self.secret = secret
        self.accounts = list(accounts)
        self.payment_ids = list(payment_ids or [])
        self.counter = 0
        self.run = uuid.uuid4().int % 10**6
        self.ts = str(int(time.time()))

    def make(self, count: int) -> list[Request]:
        out = []
        for _ in range(count):
            self.counter += 1
            n = self.counter
            payment_id = (
                self.payment_ids[(n - 1) % len(self.payment_ids)]
                if self.payment_ids
                else str(10**9 + n)
            )
            request_id = f"{self.run:06d}-{n:09d}-{uuid.uuid4().hex[:12]}"
            body = json.dumps(
                {
                    "id": self.run * 10**9 + n,
                    "live_mode": False,
                    "type": "payment",
                    "date_created": "2026-11-29T10:00:00.000-04:00",
                    "user_id": "123456789",
                    "api_version": "v1",
                    "action": "payment.updated",
                    "data": {"id": payment_id},
                },
                separators=(", ", ": "),
            )
            manifest = f"id:{payment_id.lower()};request-id:{request_id};ts:{self.ts};"
            path, secret = "/webhooks/mp", self.secret
            if self.accounts:
                account = self.accounts[(n - 1) % len(self.accounts)]
                path, secret = f"/webhooks/mp/{account.slug}", account.secret
            digest = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
            out.append(
                Request(
                    f"{path}?data.id={payment_id}&type=payment",
                    request_id,
                    f"ts={self.ts},v1={digest}",
                    body,
                )
            )
        return out


def check_signature_helper() -> None:
    """Our signing must equal the app's own (webhooks_app.signatures.sign)."""
    from webhooks_app.signatures import sign

    request = RequestFactory(["123"]).make(1)[0]
    ts = request.signature.split(",")[0].removeprefix("ts=")
    assert sign(SECRET, "123", request.request_id, int(ts)) == request.signature, "signature"


# --------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    label: str
    mode: str  # "closed" or "open"
    duration: float
    completed: int  # responses received
    ok: int  # 2xx responses
    errors: int  # non-2xx, connect/read errors, timeouts
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    target_rate: float | None = None
    late_ms_p99: float | None = None  # open loop: how late the generator sent (its own lag)
    wrapped: int = 0  # requests re-sent because the pool ran out (wrk)
    loadgen_cpu: float = 0.0  # CPU-seconds the load generator used
    server_cpu: float = 0.0  # CPU-seconds of the server's processes
    others_cpu: float = 0.0  # CPU-seconds used by everything else on the machine
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.duration if self.duration else 0.0

    def finish(self) -> LoadResult:
        """Compute the percentiles (the raw latencies stay, for merging slices)."""
        if self.latencies_ms:
            values = sorted(self.latencies_ms)
            self.p50, self.p90 = percentile(values, 50), percentile(values, 90)
            self.p99, self.max = percentile(values, 99), values[-1]
        return self


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _write_pool(path: Path, requests: Sequence[Request]) -> None:
    with open(path, "w") as handle:
        for r in requests:
            handle.write(f"{r.path}\t{r.request_id}\t{r.signature}\t{r.body}\n")


def run_wrk(
    url: str,
    requests: Sequence[Request],
    duration: float,
    connections: int,
    tmp: Path,
    label: str,
    path_prefix: str = "",
    threads: int = 2,
    server_pids: Sequence[int] = (),
) -> LoadResult:
    """Closed loop with wrk: `connections` connections, as fast as the server answers."""
    pool = tmp / f"pool-{label.replace(' ', '_').replace('/', '_')}.tsv"
    _write_pool(pool, requests)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(BENCH / "wrk_post.lua"),
        url,
        "--",
        str(pool),
        str(threads),
        path_prefix,
    ]
    meter = _Meter(server_pids)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        pool.unlink(missing_ok=True)
    loadgen_cpu = _child_cpu_since(meter)
    line = next((x for x in out.splitlines() if x.startswith("{")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out}\n{err}")
    data = json.loads(line)
    errors = data["errors"]
    error_total = sum(errors.values())
    result = LoadResult(
        label=label,
        mode="closed",
        duration=data["duration_us"] / 1e6,
        completed=data["requests"],
        ok=data["requests"] - errors["status"],
        errors=error_total,
        p50=data["p50"] / 1000,
        p90=data["p90"] / 1000,
        p99=data["p99"] / 1000,
        max=data["max"] / 1000,
        wrapped=data.get("wrapped", 0),
        error_kinds={k: v for k, v in errors.items() if v},
    )
    meter.finish(result, loadgen_cpu)
    return result


class _Meter:
    """CPU used by the server, the load generator and everyone else during one phase."""

    def __init__(self, server_pids: Sequence[int]) -> None:
        self.server_pids = list(server_pids)
        self.server0 = sum(cpu_seconds(p, True) for p in self.server_pids)
        self.machine0 = MachineCpu.busy()
        self.children0 = _children_cpu()

    def finish(self, result: LoadResult, loadgen_cpu: float) -> None:
        result.server_cpu = sum(cpu_seconds(p, True) for p in self.server_pids) - self.server0
        result.loadgen_cpu = loadgen_cpu
        total = MachineCpu.busy() - self.machine0
        result.others_cpu = max(0.0, total - result.server_cpu - loadgen_cpu)


def _children_cpu() -> float:
    usage = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child_cpu_since(meter: _Meter) -> float:
    return _children_cpu() - meter.children0


# -- the asyncio load generator (closed or open loop), one or more processes


class _Http(asyncio.Protocol):
    """One request on a fresh connection (gunicorn's sync workers close after each)."""

    def __init__(self, payload: bytes, done: asyncio.Future) -> None:
        self.payload = payload
        self.done = done
        self.buffer = bytearray()

    def connection_made(self, transport) -> None:  # noqa: ANN001
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None and not self.buffer:
                self.done.set_exception(exc)
            else:
                self.done.set_result(bytes(self.buffer))


async def _one(loop, host: str, port: int, payload: bytes, timeout: float) -> int:
    done = loop.create_future()
    transport = None
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Http(payload, done), host, port), timeout
        )
        answer = await asyncio.wait_for(done, timeout)
    finally:
        if transport is not None:
            transport.close()
    status_line = answer.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else 0


def _generator_process(args: dict, conn) -> None:  # noqa: ANN001
    """Child process: run one share of the load, send back latencies and counts."""
    result = asyncio.run(_generate(**args))
    conn.send(result)
    conn.close()


async def _generate(
    host: str,
    port: int,
    payloads: list[bytes],
    mode: str,
    rate: float,
    duration: float,
    concurrency: int,
    timeout: float,
) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    lateness: list[float] = []
    counts = {"ok": 0, "status": 0, "connect": 0, "timeout": 0, "read": 0}
    statuses: dict[str, int] = {}

    async def send(payload: bytes, scheduled: float) -> None:
        try:
            status = await _one(loop, host, port, payload, timeout)
        except TimeoutError:
            counts["timeout"] += 1
            return
        except ConnectionRefusedError:
            counts["connect"] += 1
            return
        except OSError:
            counts["read"] += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if 200 <= status < 300:
            counts["ok"] += 1
        else:
            counts["status"] += 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.perf_counter()
    if mode == "open":
        interval = 1.0 / rate
        total = min(len(payloads), int(rate * duration))
        tasks = []
        for i in range(total):
            scheduled = started + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(max(0.0, time.perf_counter() - scheduled) * 1000)
            tasks.append(asyncio.ensure_future(send(payloads[i], scheduled)))
        await asyncio.gather(*tasks)
    else:
        deadline = started + duration
        index = iter(range(len(payloads)))

        async def lane() -> None:
            for i in index:
                if time.perf_counter() >= deadline:
                    return
                await send(payloads[i], time.perf_counter())

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "latencies": latencies,
        "lateness": lateness,
        "counts": counts,
        "statuses": statuses,
        "elapsed": elapsed,
    }


def run_asyncio_load(
    url: str,
    requests: Sequence[Request],
    label: str,
    mode: str = "closed",
    rate: float = 0.0,
    duration: float = 10.0,
    concurrency: int = 32,
    processes: int = 2,
    path_prefix: str = "",
    timeout: float = 5.0,
    server_pids: Sequence[int] = (),
) -> LoadResult:
    """Closed loop (`concurrency` lanes, until `duration` or the requests run out) or open
    loop (`rate` requests/s spread evenly, latency counted from the scheduled send time,
    so a server that falls behind is charged for the queueing it causes)."""
    host, port = url.removeprefix("http://").split(":")
    payloads = [r.raw(f"{host}:{port}", path_prefix) for r in requests]
    shares = [payloads[i::processes] for i in range(processes)]
    meter = _Meter(server_pids)
    context = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for share in shares:
        receiver, sender = context.Pipe(duplex=False)
        args = {
            "host": host,
            "port": int(port),
            "payloads": share,
            "mode": mode,
            "rate": rate / processes,
            "duration": duration,
            "concurrency": max(1, concurrency // processes),
            "timeout": timeout,
        }
        proc = context.Process(target=_generator_process, args=(args, sender), daemon=True)
        proc.start()
        sender.close()
        pipes.append(receiver)
        procs.append(proc)
    parts = []
    for receiver, proc in zip(pipes, procs, strict=True):
        if not receiver.poll(duration + timeout + 60):
            proc.kill()
            raise RuntimeError("load generator did not finish")
        parts.append(receiver.recv())
        proc.join(10)  # reaped: its CPU time now counts in RUSAGE_CHILDREN
    loadgen_cpu = _child_cpu_since(meter)
    counts: dict[str, int] = {}
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    lateness: list[float] = []
    for part in parts:
        latencies += part["latencies"]
        lateness += part["lateness"]
        for key, value in part["counts"].items():
            counts[key] = counts.get(key, 0) + value
        for key, value in part["statuses"].items():
            statuses[key] = statuses.get(key, 0) + value
    errors = sum(v for k, v in counts.items() if k != "ok")
    result = LoadResult(
        label=label,
        mode=mode,
        duration=max(part["elapsed"] for part in parts),
        completed=counts["ok"] + counts["status"],
        ok=counts["ok"],
        errors=errors,
        latencies_ms=latencies,
        target_rate=rate if mode == "open" else None,
        error_kinds={**{k: v for k, v in counts.items() if v and k != "ok"}, **statuses},
    )
    if lateness:
        result.late_ms_p99 = percentile(sorted(lateness), 99)
    meter.finish(result, loadgen_cpu)
    return result.finish()


def merge(parts: Sequence[LoadResult], label: str) -> LoadResult:
    """Add up the slices of one target (interleaved with another's).

    Rates and errors add up exactly. Latency: open-loop slices keep raw
    latencies (exact percentiles); wrk slices give percentiles only, so the
    median slice's p50 and the worst slice's p99 and max are reported.
    """
    first = parts[0]
    merged = LoadResult(
        label=label,
        mode=first.mode,
        duration=sum(p.duration for p in parts),
        completed=sum(p.completed for p in parts),
        ok=sum(p.ok for p in parts),
        errors=sum(p.errors for p in parts),
        target_rate=first.target_rate,
        wrapped=sum(p.wrapped for p in parts),
        loadgen_cpu=sum(p.loadgen_cpu for p in parts),
        server_cpu=sum(p.server_cpu for p in parts),
        others_cpu=sum(p.others_cpu for p in parts),
    )
    for part in parts:
        for key, value in part.error_kinds.items():
            merged.error_kinds[key] = merged.error_kinds.get(key, 0) + value
    raw = [x for p in parts for x in p.latencies_ms]
    if raw:
        merged.latencies_ms = raw
        lateness = [p.late_ms_p99 for p in parts if p.late_ms_p99 is not None]
        merged.late_ms_p99 = max(lateness) if lateness else None
        return merged.finish()
    p50s = sorted(p.p50 for p in parts if p.p50 is not None)
    merged.p50 = p50s[len(p50s) // 2] if p50s else None
    merged.p90 = max((p.p90 for p in parts if p.p90 is not None), default=None)
    merged.p99 = max((p.p99 for p in parts if p.p99 is not None), default=None)
    merged.max = max((p.max for p in parts if p.max is not None), default=None)
    return merged


def wait_idle(pids: Sequence[int], timeout: float = 60.0, busy: float = 0.05) -> float:
    """Wait until `pids` use less than `busy` of a core (an overloaded server keeps working
    through its backlog after the load stops); return the seconds waited."""
    started = time.monotonic()
    previous = sum(cpu_seconds(p, True) for p in pids)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        current = sum(cpu_seconds(p, True) for p in pids)
        if current - previous < busy * 0.5:
            break
        previous = current
    return time.monotonic() - started


class Loader:
    """Closed-loop slices (wrk, else the asyncio generator), open-loop slices, and pairs of
    interleaved slices of a target and of the ceiling (so both see the same noise)."""

    def __init__(
        self, factory: RequestFactory, tmp: Path, connections: int = 32, use_wrk: bool = True
    ) -> None:
        self.factory = factory
        self.tmp = tmp
        self.connections = connections
        self.use_wrk = use_wrk

    def closed(
        self, server: Server, label: str, seconds: float, prefix: str = "", estimate: float = 8e3
    ) -> LoadResult:
        pids = [server.proc.pid, *server.worker_pids()]
        requests = self.factory.make(int(estimate * seconds * 1.3) + 500)
        if self.use_wrk:
            result = run_wrk(
                server.url, requests, seconds, self.connections, self.tmp, label, prefix,
                server_pids=pids,
            )  # fmt: skip
        else:
            result = run_asyncio_load(
                server.url, requests, label, duration=seconds, concurrency=self.connections,
                path_prefix=prefix, server_pids=pids,
            )  # fmt: skip
        wait_idle(pids)
        return result

    def open(self, server: Server, label: str, rate: float, seconds: float) -> LoadResult:
        pids = [server.proc.pid, *server.worker_pids()]
        requests = self.factory.make(int(rate * seconds) + 10)
        result = run_asyncio_load(
            server.url, requests, label, mode="open", rate=rate, duration=seconds,
            server_pids=pids,
        )  # fmt: skip
        wait_idle(pids)
        return result

    def paired(
        self,
        ceiling: Server,
        server: Server,
        label: str,
        slices: int,
        seconds: float,
        prefix: str = "",
        estimate: float = 8e3,
    ) -> tuple[LoadResult, LoadResult]:
        """(target, its paired ceiling): `slices` alternating slices of each."""
        self.closed(server, "warm-up", 1.0, prefix, estimate)
        mine, theirs = [], []
        for _ in range(slices):
            theirs.append(self.closed(ceiling, "ceiling", seconds, "", estimate))
            mine.append(self.closed(server, label, seconds, prefix, estimate))
        return merge(mine, label), merge(theirs, "ceiling")


@contextlib.contextmanager
def py_spy(
    pids: Sequence[int], out_dir: Path, name: str, idle: bool = False
) -> Iterator[list[Path]]:
    """Sample `pids` with py-spy (raw collapsed stacks, 100 Hz) while the block runs."""
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    outputs, procs = [], []
    for pid in pids:
        out = out_dir / f"{name}-{pid}.txt"
        argv = [spy, "record", "-p", str(pid), "-r", "100", "--format", "raw", "-o", str(out)]
        argv += ["--nonblocking"] + (["--idle"] if idle else [])
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        outputs.append(out)
    try:
        yield outputs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def summarise_profile(paths: Sequence[Path], top: int = 25) -> str:
    """Inclusive and self share of each function in collapsed-stack files."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    ours: dict[str, int] = {}
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [_frame_name(f) for f in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            mine = [f for f in stack.split(";") if "webhooks_app/" in f or "(worker.py" in f]
            line = mine[-1] if mine else "(outside the service's code: RQ, gunicorn, Flask)"
            ours[line] = ours.get(line, 0) + count
    if not total:
        return "(no samples)\n"
    rows = sorted(inclusive.items(), key=lambda kv: -kv[1])
    interesting = [
        (name, n)
        for name, n in rows
        if not any(skip in name for skip in ("<module>", "gunicorn/", "run (", "_bootstrap"))
    ][:top]
    out = table(
        ("function (file)", "inclusive %", "self %"),
        [(name, 100 * n / total, 100 * own.get(name, 0) / total) for name, n in interesting],
        title=f"py-spy: {total} samples",
    )
    out += "\n" + table(
        ("innermost line of the service's code (webhooks_app/, worker.py)", "% of samples"),
        [(line, 100 * n / total) for line, n in sorted(ours.items(), key=lambda kv: -kv[1])[:20]],
        title="where the service's own code was when sampled (what it was waiting on or doing)",
    )
    selfish = sorted(own.items(), key=lambda kv: -kv[1])[:12]
    out += "\n" + table(
        ("function (file)", "self %"),
        [(name, 100 * n / total) for name, n in selfish],
        title="top self time",
    )
    return out


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
