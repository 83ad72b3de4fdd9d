"""Brute-force protection for the Basic logins (admin, /rq): failures counted in Redis.

Only failed logins count, per client address and per username, in a moving
window (LOGIN_FAILURE_LIMIT, e.g. "10/minute"). Once either budget is spent,
every login of that address or username, a correct one included, is answered
429 with `Retry-After` until the oldest counted failure leaves the window: no
new failure is counted meanwhile, so a correct password is never locked out for
longer than one window. When Redis is down the throttle steps aside (logged):
the operators must still be able to log in to see what is wrong.

The `limits` library (the engine under Flask-Limiter, already used for the GHL
rate limit) is called directly: Flask-Limiter counts requests to views, while
this counts outcomes of an authentication hook shared by two blueprints, one of
them rq-dashboard's, and must never charge a correct login.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from flask import Flask, Request, current_app
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from .config import ConfigError
from .queueing import get_redis

logger = logging.getLogger(__name__)

NAMESPACE = "login-failures"
EXTENSION = "login_throttle"


class LoginThrottle:
    """Counts failed logins per client address and per username."""

    def __init__(self, app: Flask, item: RateLimitItem) -> None:
        self.item = item
        storage = RedisStorage("redis://", connection_pool=get_redis(app).connection_pool)
        self.limiter = MovingWindowRateLimiter(storage)

    def retry_after(self, req: Request, username: str) -> int | None:
        """Seconds until this address and username may try again; None if they may now."""
        try:
            for key in _keys(req, username):
                if not self.limiter.test(self.item, NAMESPACE, *key):
                    reset_at, _ = self.limiter.get_window_stats(self.item, NAMESPACE, *key)
                    return max(1, math.ceil(reset_at - time.time()))
        except (RedisError, StorageError) as exc:
            logger.warning("login throttle unavailable (Redis: %s); login not throttled", exc)
        return None

    def record_failure(self, req: Request, username: str) -> None:
        """Count one failed login against the address and the username."""
        try:
            for key in _keys(req, username):
                self.limiter.hit(self.item, NAMESPACE, *key)
        except (RedisError, StorageError) as exc:
            logger.warning("login throttle unavailable (Redis: %s); failure not counted", exc)


def _keys(req: Request, username: str) -> list[tuple[str, str]]:
    # The username hashed: whatever a client sends stays out of Redis keys.
    user = hashlib.sha256(username.encode()).hexdigest()[:32]
    return [("addr", req.remote_addr or "unknown"), ("user", user)]


def init_app(app: Flask) -> None:
    """Make the app's throttle from LOGIN_FAILURE_LIMIT ("off" disables it)."""
    value = (app.config.get("LOGIN_FAILURE_LIMIT") or "off").strip()
    if value.lower() in {"off", "0", "none"}:
        app.extensions[EXTENSION] = None
        return
    try:
        item = parse(value)
    except ValueError:
        raise ConfigError(
            f"LOGIN_FAILURE_LIMIT looks like 10/minute or 5 per 30 seconds, got {value!r}"
        ) from None
    app.extensions[EXTENSION] = LoginThrottle(app, item)


def get_throttle() -> LoginThrottle | None:
    return current_app.extensions.get(EXTENSION)
