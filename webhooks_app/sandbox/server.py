"""Serve the sandbox: on a real socket in a background thread (tests), or in the foreground (CLI).

Like the real APIs, the sandbox keeps HTTP/1.1 connections alive, so the service's
`requests` sessions reuse one connection for their calls instead of opening one per
call. werkzeug's development server cannot do that (it answers every request with
`Connection: close`, whatever its `protocol_version`); waitress can.
"""

from __future__ import annotations

import logging
import socket
import threading
from types import TracebackType
from typing import Self

from flask import Flask
from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

from .app import create_sandbox_app
from .state import SandboxState

logger = logging.getLogger(__name__)

# Calls answered at once: an injected delay or latency holds one thread for its duration.
THREADS = 64
# An idle kept-alive connection is closed after this long (the client opens a new one).
IDLE_TIMEOUT = 60


def make_sandbox_server(app: Flask, host: str, port: int) -> BaseWSGIServer:
    """A waitress server for `app` on exactly one socket (`port=0` picks a free port)."""
    # One socket of our own: waitress would listen on every address `host` resolves to.
    sock = socket.create_server((host, port))
    return create_server(
        app,
        sockets=[sock],
        threads=THREADS,
        channel_timeout=IDLE_TIMEOUT,
        connection_limit=1000,
        ident="sandbox",
    )


class SandboxServer:
    """The sandbox served from a daemon thread; `port=0` picks a free port.

    Usage: `with SandboxServer() as sandbox: requests.get(sandbox.url + "/...")`.
    """

    def __init__(
        self, state: SandboxState | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state if state is not None else SandboxState()
        self.host = host
        self.port = port
        self.app = create_sandbox_app(self.state)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321" (known once started)."""
        if self._server is None:
            raise RuntimeError("SandboxServer is not started")
        return f"http://{self.host}:{self._server.effective_port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread; return self."""
        if self._server is not None:
            return self
        self._server = make_sandbox_server(self.app, self.host, self.port)
        self._thread = threading.Thread(
            target=self._server.run,
            name=f"sandbox-server-{self._server.effective_port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("sandbox serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection (kept-alive ones too) and release the port.

        Requests still in flight are abandoned.
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        # The socket map belongs to the server's loop thread: close it from there, which
        # also ends the loop (it runs while the map has sockets).
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError:  # the loop has already ended and closed its trigger (seen in CI)
            wasyncore.close_all(server._map, ignore_all=True)
        if thread is not None:
            thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=1)
        self._server = self._thread = None
        logger.info("sandbox stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
