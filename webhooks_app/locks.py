"""The per-resource Redis lock of an attempt: events about one resource never overlap.

The key comes from the event's handler (`Handler.lock_key`: `payment:<id>` for a
payment); an event whose handler names none runs unlocked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from redis import RedisError
from redis.exceptions import LockError
from redis.lock import Lock
from sqlalchemy import Row

from . import queueing
from .handlers import lock_key

logger = logging.getLogger(__name__)

# Another event about the same resource is running: wait this long for it (then the
# caller postpones).
LOCK_WAIT = 5.0


class ResourceLock:
    """The resource lock of one attempt; `extend` keeps it as long as the lease."""

    def __init__(self, lock: Lock | None, seconds: float, key: str | None = None) -> None:
        self.lock = lock
        self.seconds = seconds
        self.key = key

    def extend(self) -> None:
        if self.lock is None:
            return
        try:
            self.lock.extend(self.seconds, replace_ttl=True)
        except (RedisError, LockError) as exc:
            logger.warning("%s lock could not be extended: %s", self.key, exc)


@contextmanager
def resource_lock(event: Row[Any]) -> Iterator[ResourceLock | None]:
    """Hold the event's resource lock while processing it.

    Yields None when another worker holds it. If Redis is unreachable, processing
    goes on unlocked: the handlers' monotonic upserts still keep the newest state.
    """
    seconds = current_app.config["LEASE_SECONDS"]
    key = lock_key(event)
    if key is None:
        yield ResourceLock(None, seconds)
        return
    # Two accounts may name a resource alike: the account is part of the lock's name.
    lock = queueing.get_redis().lock(
        f"lock:{event.account_id}:{key}", timeout=seconds, blocking_timeout=LOCK_WAIT
    )
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        logger.warning("event %s: %s lock unavailable (%s); going on unlocked", event.id, key, exc)
        yield ResourceLock(None, seconds, key)
        return
    if not acquired:
        yield None
        return
    try:
        yield ResourceLock(lock, seconds, key)
    finally:
        try:
            lock.release()
        except (RedisError, LockError) as exc:
            logger.warning("event %s: %s lock release failed: %s", event.id, key, exc)
