"""Start the service's real processes (gunicorn, worker.py, scheduler.py) for tests.

Every process is started here and stopped by its own pid, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, notification

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s {message}")
        time.sleep(interval)


class Processes:
    """The service's processes for one test, sharing one environment.

    They use the test's database and Redis (the testing configuration reads the
    same TEST_* variables) and talk to the test's sandbox at `sandbox_url`.
    """

    def __init__(self, log_dir: Path, sandbox_url: str, **env: str) -> None:
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "APP_ENV": "testing",
            "PYTHONUNBUFFERED": "1",
            "MP_API_BASE_URL": sandbox_url,
            "GHL_API_BASE_URL": sandbox_url,
            "SCHEDULER_INTERVAL": "0.5",
            "CATCH_UP_INTERVAL": "0",  # catch-up would add events of its own to the counts
            **env,
        }
        self.running: dict[str, subprocess.Popen] = {}
        self.url: str | None = None

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            command, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.running[name] = process
        return process

    def start_web(self, workers: int = 2) -> str:
        """gunicorn with the Procfile's settings; returns the base URL once it answers."""
        port = free_port()
        self.start(
            "web",
            [
                str(BIN / "gunicorn"),
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                "16",
                "--timeout",
                "30",
                # As in the Procfile: one control socket per user would be shared between runs.
                "--no-control-socket",
            ],
        )
        self.url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, 30, message="for gunicorn: " + self.log("web"))
        return self.url

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self.start(
            name, [sys.executable, "worker.py", "--name", f"{name}-{uuid.uuid4().hex[:6]}"]
        )

    def start_scheduler(self) -> subprocess.Popen:
        return self.start("scheduler", [sys.executable, "scheduler.py"])

    def signal(self, name: str, signum: int) -> None:
        self.running[name].send_signal(signum)

    def stop(self, name: str, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    @classmethod
    def deployed(cls, log_dir: Path, sandbox_url: str) -> Iterator[Processes]:
        """The service as deployed (gunicorn with the Procfile's settings, a worker and the
        scheduler), stopped afterwards: a fixture's body (`yield from Processes.deployed(…)`)."""
        processes = cls(log_dir, sandbox_url)
        try:
            processes.start_web()
            processes.start_worker()
            processes.start_scheduler()
            yield processes
        finally:
            processes.stop_all()

    def stop_all(self) -> None:
        """Stop every process, then print the end of each log (pytest shows it on failure)."""
        names = list(self.running)
        for name in names:
            self.stop(name)
        for name in names:
            print(f"--- {name} log ---\n{self.log(name)[-4000:]}")

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def send_topic(
        self, event_type: str, resource_id: int | str, *, live_mode: bool = True
    ) -> requests.Response:
        """POST a signed Webhooks-form notification of any topic to the running web process."""
        resource_id, request_id = str(resource_id), str(uuid.uuid4())
        body = {
            **notification(resource_id),
            "type": event_type,
            "action": f"{event_type}.updated",
            "live_mode": live_mode,
        }
        return requests.post(
            f"{self.url}/webhooks/mp",
            params={"data.id": resource_id, "type": event_type},
            json=body,
            headers={
                "x-request-id": request_id,
                "x-signature": sign(WEBHOOK_SECRET, resource_id, request_id),
            },
            timeout=10,
        )

    def send_without_data_id(self, body: dict[str, Any]) -> requests.Response:
        """POST a notification with no data.id (a fraud alert), signed as MercadoPago signs
        one: the id part of the manifest left out."""
        request_id = str(uuid.uuid4())
        return requests.post(
            f"{self.url}/webhooks/mp",
            json=body,
            headers={
                "x-request-id": request_id,
                "x-signature": sign(WEBHOOK_SECRET, None, request_id),
            },
            timeout=10,
        )

    def send(self, payment_id: int | str, **kwargs: Any) -> requests.Response:
        """POST a signed Webhooks-form notification to the running web process."""
        request_id = kwargs.pop("request_id", None) or str(uuid.uuid4())
        body = kwargs.pop("body", None) or notification(payment_id, **kwargs)
        return requests.post(
            f"{self.url}/webhooks/mp",
            params={"data.id": str(payment_id), "type": "payment"},
            json=body,
            headers={
                "x-request-id": request_id,
                "x-signature": sign(WEBHOOK_SECRET, str(payment_id), request_id),
            },
            timeout=10,
        )


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that the test may stop and restart."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.log_dir),
            ],
            stdout=open(self.log_dir / "redis.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, message="for redis-server")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # as abrupt as a crash: nothing is saved
            self.process.wait(timeout=10)
