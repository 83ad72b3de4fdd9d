"""The app's API clients: one per app and process, built from the configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app

from .config import parse_rate_limit
from .queueing import get_redis
from .ratelimit import SharedRateLimiter
from .services import GoHighLevelClient, MercadoPagoClient

T = TypeVar("T")


def _per_app(name: str, build: Callable[[], T]) -> T:
    """One `build()` per app and process, kept in `app.extensions` (clients keep connections)."""
    extensions = current_app.extensions
    if name not in extensions:
        extensions[name] = build()
    return extensions[name]


def mercadopago_client() -> MercadoPagoClient:
    """The app's MercadoPago client."""
    return _per_app("mercadopago_client", lambda: MercadoPagoClient.from_config(current_app.config))


def gohighlevel_client() -> GoHighLevelClient:
    """The app's GoHighLevel client."""
    return _per_app("gohighlevel_client", lambda: GoHighLevelClient.from_config(current_app.config))


def ghl_rate_limiter() -> SharedRateLimiter | None:
    """The shared GoHighLevel limiter (None when GHL_RATE_LIMIT is off)."""

    def build() -> SharedRateLimiter | None:
        limit = parse_rate_limit(current_app.config["GHL_RATE_LIMIT"])
        return SharedRateLimiter(get_redis(), "gohighlevel", *limit) if limit else None

    return _per_app("ghl_rate_limiter", build)
