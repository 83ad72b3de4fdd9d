"""The API clients of the current account (accounts.py): one per account, app and process,
built from the account's settings over the app's configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app

from .accounts import AccountSettings, current_account
from .config import parse_rate_limit
from .queueing import get_redis
from .ratelimit import SharedRateLimiter
from .services import GoHighLevelClient, MercadoPagoClient

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


def mercadopago_client() -> MercadoPagoClient:
    """The current account's MercadoPago client."""
    return _per_account(
        "mercadopago_clients", lambda account: MercadoPagoClient.from_config(account.config)
    )


def gohighlevel_client() -> GoHighLevelClient:
    """The current account's GoHighLevel client."""
    return _per_account(
        "gohighlevel_clients", lambda account: GoHighLevelClient.from_config(account.config)
    )


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
