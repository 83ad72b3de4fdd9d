"""Run the sandbox on a real socket in a background thread (for tests and the CLI)."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Self

from werkzeug.serving import BaseWSGIServer, make_server

from .app import create_sandbox_app
from .state import SandboxState

logger = logging.getLogger(__name__)


class SandboxServer:
    """A threaded werkzeug server for the sandbox; `port=0` picks a free port.

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
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread; return self."""
        if self._server is not None:
            return self
        # threaded=True: each request gets a thread, so an injected delay blocks
        # only its own call, as with the real APIs.
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick, clean stop()
            name=f"sandbox-server-{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("sandbox serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (requests still in flight are abandoned)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
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
