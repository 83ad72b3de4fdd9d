"""`/api/processing`: pause, resume and the state of processing and its circuit breakers.

Routes on the API blueprint (its token or Basic login applies), kept apart from
api.py; imported at the end of it.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from ..pausing import PauseError, pause, resume, status
from .api import BadRequest, _json_body, bp


@bp.errorhandler(PauseError)
def pause_refused(exc: PauseError) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 400


def api_actor() -> str:
    """Who is calling: the admin user of Basic credentials, else the API token's holder."""
    auth = request.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        return f"api (admin {auth.username})"
    return "api (token)"


@bp.get("/processing")
def processing_status() -> ResponseReturnValue:
    """Paused stages with who/when/why, the breakers, the latest pauses and resumes."""
    return jsonify(status())


@bp.post("/processing/pause")
def processing_pause() -> ResponseReturnValue:
    """Pause `stage` (all, mercadopago, gohighlevel) with a `reason`."""
    body = _body()
    changed = pause(body.get("stage"), body.get("reason"), api_actor())
    return jsonify({"changed": changed, **status()})


@bp.post("/processing/resume")
def processing_resume() -> ResponseReturnValue:
    """Resume `stage` (default all: every pause) and drain what it held, in received order."""
    body = _body()
    report = resume(body.get("stage"), api_actor(), account=body.get("account"))
    return jsonify({**report.to_dict(), **status()})


def _body() -> dict[str, Any]:
    try:
        return _json_body()
    except BadRequest as exc:
        raise PauseError(str(exc)) from None
