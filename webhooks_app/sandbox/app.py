"""Application factory for the sandbox that imitates MercadoPago and GoHighLevel."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import control, gohighlevel, mercadopago, outage
from .gate import install, json_response
from .state import SandboxState

logger = logging.getLogger(__name__)


def create_sandbox_app(state: SandboxState | None = None) -> Flask:
    """A Flask app serving both imitated APIs and the /_sandbox control routes from `state`."""
    app = Flask(__name__)
    app.json.sort_keys = False  # keep the field order of the real APIs' answers
    install(app, state if state is not None else SandboxState())
    app.register_blueprint(mercadopago.bp)
    app.register_blueprint(gohighlevel.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(outage.bp)  # h6
    app.register_error_handler(HTTPException, _http_error)
    return app


def _http_error(exc: HTTPException) -> Response:
    """JSON instead of HTML for unknown routes and wrong methods, as both APIs answer."""
    status = exc.code or 500
    if request.path.startswith("/v1/"):
        body = mercadopago.mp_error(status, exc.description)
    else:
        body = gohighlevel.ghl_error(status, exc.description)
    return json_response(body, status)
