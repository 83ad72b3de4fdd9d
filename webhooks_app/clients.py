"""The API clients of the current account (accounts.py): one per account, app and process,
built from the account's settings over the app's configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import current_app
from requests import Session
from requests.cookies import RequestsCookieJar

from .accounts import AccountSettings, current_account
from .config import parse_rate_limit
from .queueing import get_redis
from .ratelimit import SharedRateLimiter
from .services import GoHighLevelClient, MercadoPagoClient
from .services.http import build_session, config_base_url

T = TypeVar("T")


def _per_account(name: str, build: Callable[[AccountSettings], T]) -> T:
    """One `build(account)` per account (and version of its settings), app and process, kept
    in `app.extensions` (clients keep connections); an account's edit builds a new one."""
    account = current_account()
    built: dict[tuple[int, str], T] = current_app.extensions.setdefault(name, {})
    key = (account.id, account.version)
    if key not in built:
        for stale in [k for k in built if k[0] == account.id]:
            del built[stale]
        built[key] = build(account)
    return built[key]


class NoCookies(RequestsCookieJar):
    """A cookie jar that keeps nothing: a session shared by accounts never carries a cookie
    one account's call was given into another's (the APIs authenticate by token anyway)."""

    def set_cookie(self, cookie: Any, *args: Any, **kwargs: Any) -> None:
        return None


def _shared_session(config: Mapping[str, Any], base_url_setting: str, default: str) -> Session:
    """One connection pool per API host for every account's client (each request carries
    its own account's token): a hundred accounts cost a worker one TLS handshake, not a
    hundred. It keeps no cookie, so nothing of one account's call rides on another's."""
    base_url = config_base_url(config, base_url_setting, default)
    sessions: dict[str, Session] = current_app.extensions.setdefault("api_sessions", {})
    if base_url not in sessions:
        session = build_session(base_url)
        session.cookies = NoCookies()
        sessions[base_url] = session
    return sessions[base_url]


def mercadopago_client() -> MercadoPagoClient:
    """The current account's MercadoPago client."""

    def build(account: AccountSettings) -> MercadoPagoClient:
        config = account.config
        session = _shared_session(config, "MP_API_BASE_URL", MercadoPagoClient.DEFAULT_BASE_URL)
        return MercadoPagoClient.from_config(config, session)

    return _per_account("mercadopago_clients", build)


def gohighlevel_client() -> GoHighLevelClient:
    """The current account's GoHighLevel client."""

    def build(account: AccountSettings) -> GoHighLevelClient:
        config = account.config
        session = _shared_session(config, "GHL_API_BASE_URL", GoHighLevelClient.DEFAULT_BASE_URL)
        return GoHighLevelClient.from_config(config, session)

    return _per_account("gohighlevel_clients", build)


def ghl_rate_limiter() -> SharedRateLimiter | None:
    """The shared GoHighLevel limiter (None when GHL_RATE_LIMIT is off); it counts each
    location's calls apart (GoHighLevel's limit is per location)."""

    def build() -> SharedRateLimiter | None:
        limit = parse_rate_limit(current_app.config["GHL_RATE_LIMIT"])
        return SharedRateLimiter(get_redis(), "gohighlevel", *limit) if limit else None

    extensions = current_app.extensions
    if "ghl_rate_limiter" not in extensions:
        extensions["ghl_rate_limiter"] = build()
    return extensions["ghl_rate_limiter"]
