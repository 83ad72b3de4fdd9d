"""Outages: every call to one imitated API fails for a time window (h6, for breaker tests).

`POST /_sandbox/outage {"api": "gohighlevel", "seconds": 25, "status": 503}` makes every
GoHighLevel call answer 503 for the next 25 s, whatever its key; `"seconds": 0` ends
it. Checked first by gate.admit, before latency, rate limit and scripted faults.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, request

from .faults import APIS, RealClock, normalise_api
from .gate import get_state, json_response
from .state import SandboxState

bp = Blueprint("sandbox_outage", __name__, url_prefix="/_sandbox")
_attach = threading.Lock()


class Outages:
    """The APIs down until some time (monotonic), each with the status it answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[str, tuple[float, int]] = {}

    def start(self, api: str, seconds: float, status: int = 503) -> None:
        """Fail every call to `api` with `status` for `seconds`; 0 ends an outage."""
        api = normalise_api(api)
        if seconds < 0 or not 400 <= status <= 599:
            raise ValueError("seconds must be >= 0 and status an HTTP error status")
        with self._lock:
            if seconds == 0:
                self._down.pop(api, None)
            else:
                self._down[api] = (RealClock.monotonic() + seconds, int(status))

    def status(self, api: str) -> int | None:
        """The status to answer a call to `api` with, None when it is up."""
        with self._lock:
            down = self._down.get(api)
            if down is None:
                return None
            if RealClock.monotonic() >= down[0]:
                del self._down[api]
                return None
            return down[1]

    def to_dict(self) -> dict[str, Any]:
        now = RealClock.monotonic()
        with self._lock:
            return {
                api: {"status": status, "seconds_left": round(until - now, 3)}
                for api, (until, status) in self._down.items()
                if until > now and api in APIS
            }


def outages(state: SandboxState) -> Outages:
    """The outages of `state` (kept on it; `reset()` does not end them: they end by time)."""
    with _attach:
        found = getattr(state, "_outages", None)
        if found is None:
            found = state._outages = Outages()  # type: ignore[attr-defined]
        return found


@bp.post("/outage")
def start_outage() -> Response:
    """Body: {"api", "seconds", "status"?=503}; seconds 0 ends the outage."""
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        return json_response({"error": "expected a JSON object"}, 400)
    try:
        outages(get_state()).start(
            body["api"], float(body["seconds"]), int(body.get("status", 503))
        )
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(outages(get_state()).to_dict(), 200)


@bp.get("/outage")
def show_outage() -> Response:
    """The APIs currently down."""
    return json_response(outages(get_state()).to_dict(), 200)
