"""Per-request plumbing shared by the imitated APIs: state lookup, fault gate, call log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request

from .faults import RealClock, format_seconds
from .state import SandboxState

logger = logging.getLogger(__name__)

STATE_EXTENSION = "sandbox_state"


def get_state() -> SandboxState:
    """The state of the app serving this request."""
    return current_app.extensions[STATE_EXTENSION]


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with a status and optional headers."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def bearer_token() -> str | None:
    """The request's bearer token (`Authorization: Bearer <token>`), or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def mark_api_call(api: str, key: str | None = None) -> None:
    """Flag this request as an API call, so that it is logged when answered."""
    g.sandbox_api = api
    g.sandbox_key = key
    g.sandbox_outcome = "ok"
    g.sandbox_headers = {}


def set_call_key(key: str | None) -> None:
    """Record the key (payment id, e-mail) once the view knows it."""
    g.sandbox_key = key


def admit(
    api: str,
    key: str | None,
    error_body: Callable[[int], dict],
    bucket: str | None = None,
    action: str | None = None,
) -> Response | None:
    """Apply latency and faults; return the error response to send, or None to go on."""
    from .outage import outages  # h6: a whole API down for a time window

    down = outages(get_state()).status(api)
    if down is not None:
        g.sandbox_outcome = "outage"
        return json_response(error_body(down), down)
    admission = get_state().admit(api, key, bucket, action)
    g.sandbox_outcome = admission.outcome
    g.sandbox_headers = admission.headers
    if admission.sleep > 0:
        time.sleep(admission.sleep)  # outside the state lock: other calls proceed
    if admission.status is None:
        return None
    logger.info(
        "%s %s -> injected %s (%s, key=%r)",
        request.method,
        request.path,
        admission.status,
        admission.outcome,
        key,
    )
    headers = {}
    if admission.retry_after is not None:
        headers["Retry-After"] = format_seconds(admission.retry_after)
    return json_response(error_body(admission.status), admission.status, headers)


def _start_timer() -> None:
    g.sandbox_started = RealClock.time()


def _log_api_call(response: Response) -> Response:
    """Log API calls (never control routes) and attach the rate-limit headers."""
    api = g.get("sandbox_api")
    if api is None:
        return response
    for name, value in g.get("sandbox_headers", {}).items():
        response.headers.setdefault(name, value)
    outcome = g.get("sandbox_outcome", "ok")
    if outcome in ("ok", "delayed") and response.status_code >= 400:
        outcome = "error"  # the imitated API itself refused the call (401, 404, 422...)
    # The access log (the server, waitress, keeps none).
    logger.info(
        "%s %s %s -> %s (%s)", api, request.method, request.path, response.status_code, outcome
    )
    get_state().record_call(
        api=api,
        method=request.method,
        path=request.path,
        query=request.args.to_dict(),
        status=response.status_code,
        body=request.get_json(silent=True),
        key=g.get("sandbox_key"),
        token=bearer_token(),
        outcome=outcome,
        started=g.get("sandbox_started", RealClock.time()),
    )
    return response


def install(app: Flask, state: SandboxState) -> None:
    """Attach the state and the call-logging hooks to `app`."""
    app.extensions[STATE_EXTENSION] = state
    app.before_request(_start_timer)
    app.after_request(_log_api_call)
