"""Operator authentication: HTTP Basic for the admin and /rq (browsers), Bearer for /api
(the global API_TOKEN, or an account's token that sees that account only: `api_caller`).

There are no default credentials: a surface whose credentials are not
configured answers 503 and says what to set. Every comparison is constant-time,
so response timing reveals nothing about the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, request

from .login_throttle import get_throttle
from .metrics import LOGIN_FAILURES

logger = logging.getLogger(__name__)

ADMIN_REALM = "webhooks admin"
ADMIN_DISABLED_MESSAGE = (
    "The admin is disabled: set the ADMIN_USERNAME and ADMIN_PASSWORD environment "
    "variables (see README, 'Configuration') and restart the service."
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def admin_configured(config: Mapping[str, Any]) -> bool:
    """Both admin credentials are set."""
    return bool(config.get("ADMIN_USERNAME")) and bool(config.get("ADMIN_PASSWORD"))


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def basic_auth_ok(req: Request, config: Mapping[str, Any]) -> bool:
    """The request carries the admin's Basic credentials."""
    if not admin_configured(config):
        return False
    auth = req.authorization
    if auth is None or auth.type != "basic":
        return False
    # Both compared, always: no early exit on a wrong username.
    user_ok = _same(auth.username, config["ADMIN_USERNAME"])
    password_ok = _same(auth.password, config["ADMIN_PASSWORD"])
    return user_ok & password_ok


def bearer_ok(req: Request, token: str | None) -> bool:
    """The request carries `Authorization: Bearer <token>`."""
    if not token:
        return False
    scheme, _, given = req.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _same(given.strip(), token)


def require_admin() -> Response | None:
    """A before_request hook: None to go on, else the 503, 401 or 429 answer.

    Failed logins are throttled (login_throttle): once an address or a username
    has spent its budget, its logins are refused before the password is even
    compared, so guessing gains nothing from the 429 window.
    """
    config = current_app.config
    if not admin_configured(config):
        return Response(ADMIN_DISABLED_MESSAGE, 503, mimetype="text/plain")
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return _challenge()  # a browser's first request: no attempt, nothing counted
    throttle = get_throttle()
    username = auth.username or ""
    if throttle is not None:
        wait = throttle.retry_after(request, username)
        if wait is not None:
            LOGIN_FAILURES.labels(reason="throttled").inc()
            logger.warning(
                "login throttled for %s (user %r): too many failures; retry in %ss",
                request.remote_addr,
                username[:64],
                wait,
            )
            return Response(
                f"Too many failed logins. Try again in {wait} seconds.",
                429,
                {"Retry-After": str(wait)},
                mimetype="text/plain",
            )
    if not basic_auth_ok(request, config):
        LOGIN_FAILURES.labels(reason="invalid").inc()
        logger.warning(
            "failed login from %s (user %r) to %s", request.remote_addr, username[:64], request.path
        )
        if throttle is not None:
            throttle.record_failure(request, username)
        return _challenge()
    return None


def _challenge() -> Response:
    return Response(
        "Authentication required: use the ADMIN_USERNAME and ADMIN_PASSWORD credentials.",
        401,
        {"WWW-Authenticate": f'Basic realm="{ADMIN_REALM}", charset="UTF-8"'},
        mimetype="text/plain",
    )


def foreign_origin() -> bool:
    """The request carries an `Origin` header of another site (`null` included).

    Browsers add `Origin` to every cross-origin fetch and to every POST; API
    clients (curl, scripts) send none, so they are unaffected.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc != request.host


def same_origin() -> bool:
    """A state-changing browser request comes from a page of this host.

    Browsers send `Origin` (or at least `Referer`) with cross-site POSTs, so a
    forged one is refused; a client that sends neither is not a browser.
    """
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    return urlsplit(source).netloc == request.host


def ensure_secret_key(app: Flask) -> None:
    """Give the app a SECRET_KEY (sessions, CSRF tokens) when none is configured.

    Derived from the admin credentials, so every process agrees on it without a
    new setting. A slow derivation: a signed cookie must not make guessing the
    password offline cheap.
    """
    if app.config.get("SECRET_KEY") or not admin_configured(app.config):
        return
    app.config["SECRET_KEY"] = _derive_key(
        app.config["ADMIN_USERNAME"], app.config["ADMIN_PASSWORD"]
    )


@lru_cache(maxsize=8)
def _derive_key(username: str, password: str) -> str:
    material = f"{username}\0{password}".encode()
    return hashlib.pbkdf2_hmac("sha256", material, b"webhooks-admin-secret-key", 200_000).hex()


@dataclass(frozen=True)
class ApiCaller:
    """Who holds an API bearer token: the global API_TOKEN (`account_id` None: it sees every
    account) or one account's token (it sees that account only)."""

    account_id: int | None = None
    account_slug: str | None = None
    account_enabled: bool = True

    @property
    def is_global(self) -> bool:
        return self.account_id is None


def api_caller(req: Request, config: Mapping[str, Any]) -> ApiCaller | None:
    """The caller the request's `Authorization: Bearer …` names, or None for no valid token.

    The global token is compared in constant time, always (also when an account's token is
    given). An account's token is found by its SHA-256 (all that is stored): a lookup by
    hash reveals nothing usable through timing, as the hash of a guess says nothing about
    how close the guess is.
    """
    scheme, _, given = req.headers.get("Authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if bearer_ok(req, config.get("API_TOKEN")):
        return ApiCaller()
    if not given:
        return None
    from .account_ops import account_for_token  # account_ops imports the models

    account = account_for_token(given)
    if account is None:
        return None
    return ApiCaller(account.id, account.slug, account.enabled)
