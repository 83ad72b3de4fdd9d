"""Storing notifications: the first and only thing done before answering MercadoPago.

Every accepted notification is committed in SQL before its 200. One commit per
request would make the database's round trips and its WAL flush the cost of
every request, so the requests of one process share them (group commit): a
request queues its notification; whichever request holds the writer's lock
takes everything queued so far and stores it with one multi-row
`INSERT … ON CONFLICT (webhook_id) DO NOTHING RETURNING`, then queues the new
events' jobs in one Redis round trip. That one statement is its own transaction
(autocommit: no BEGIN, no separate COMMIT), on a connection the writers pass
on to each other while batches follow one another (no pool checkout and ping
per batch): one round trip to the database per batch. The others, queued behind
the lock meanwhile, find their notification stored and queued, and answer. Alone, a
request simply stores its own: nothing waits for a batch to fill.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from redis import RedisError
from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from . import queueing, tracing
from .extensions import db
from .metrics import STORE_BATCH_SIZE
from .models import EventStatus, WebhookEvent
from .notifications import Notification
from .sql import dialect_insert
from .timeutil import utcnow

logger = logging.getLogger(__name__)

EVENTS = WebhookEvent.__table__


class NotStoredError(RuntimeError):
    """The database accepted the batch but kept neither this notification nor an earlier copy
    (a trigger skipped the row, or the copy was deleted meanwhile): answer 5xx, it comes again."""


@dataclass(frozen=True)
class StoredEvent:
    """The outcome of storing one notification."""

    id: int
    created: bool  # False: a redelivery of a notification already stored
    queued: bool  # False: not handed to Redis; it stays `pending` and is found later


class _Request:
    """One notification waiting for its batch to be written."""

    __slots__ = ("notification", "result", "error", "wake", "leads", "trace")

    def __init__(self, notification: Notification) -> None:
        self.notification = notification
        # Taken in the request's own thread: another request's thread may enqueue it.
        self.trace = tracing.current_carrier()
        self.result: StoredEvent | None = None
        self.error: BaseException | None = None
        self.wake = threading.Event()  # set when written, or when it is its turn to write
        self.leads = False


class EventWriter:
    """Stores the notifications of one process's concurrent requests in shared transactions.

    At most one request at a time writes (the leader); it takes every request
    queued so far, including its own. The others sleep until their batch is
    written; when the leader is done it hands the pen to the oldest request still
    queued, so nobody writes twice and nobody waits for a batch to fill.
    """

    def __init__(self, max_batch: int, *, enqueue: bool = True) -> None:
        self.max_batch = max_batch
        self.enqueue = enqueue  # False only to measure the store alone (bench/)
        self._queue: list[_Request] = []
        self._mutex = threading.Lock()
        self._writing = False
        # Only the request holding the pen uses it; back to the pool when nobody is queued.
        self._connection: Connection | None = None

    def store(self, notification: Notification) -> StoredEvent:
        """Commit the notification (or find its earlier copy); raise SQLAlchemyError or
        NotStoredError if the database cannot store it."""
        request = _Request(notification)
        with self._mutex:
            self._queue.append(request)
            request.leads = not self._writing
            self._writing = True
        if not request.leads:
            request.wake.wait()
        if request.leads:
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self) -> None:
        """Write the queued batch (the leader's own request is first) and hand over; then
        queue the batch's new events while the next leader writes its batch."""
        with self._mutex:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        try:
            try:
                created = self._insert_or_split(batch)
            finally:
                self._hand_over()
            if self.enqueue:
                _enqueue(created)
        except BaseException as exc:  # a bug, or the worker being stopped: fail them all
            for request in batch:
                if request.result is None and request.error is None:
                    request.error = exc
            raise
        finally:
            for request in batch:
                request.leads = False
                request.wake.set()

    def _hand_over(self) -> None:
        """Let the oldest queued request write the next batch, or note that nobody writes."""
        idle: Connection | None = None
        with self._mutex:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._writing = False
                idle, self._connection = self._connection, None
        if idle is not None:
            idle.close()

    def _insert_or_split(self, batch: list[_Request]) -> list[_Request]:
        """Insert the batch; return the requests that created events."""
        try:
            return self._insert(batch)
        except SQLAlchemyError as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return []
            # One bad row must not fail the others: store them one by one.
            logger.warning("a batch of %s failed (%s); storing one by one", len(batch), exc)
            created: list[_Request] = []
            for request in batch:
                created += self._insert_or_split([request])
            return created

    def _insert(self, batch: list[_Request]) -> list[_Request]:
        """Insert the batch on the kept connection; a failure drops that connection."""
        try:
            return _insert(self._connect(), batch)
        except DBAPIError as exc:
            self._drop_connection()
            if not exc.connection_invalidated:
                raise
            # The kept connection had died (say the database restarted): once more on a
            # new one, which the pool pings first.
            return _insert(self._connect(), batch)
        except BaseException:
            self._drop_connection()  # in an unknown state: the next batch takes a new one
            raise

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _insert(connection: Connection, batch: list[_Request]) -> list[_Request]:
    """Insert the batch with one statement, then look up the ids of the redeliveries."""
    STORE_BATCH_SIZE.observe(len(batch))
    # A notification's key is its account's and its own id; delivered twice in one batch,
    # the first copy is stored.
    first: dict[tuple[int, str], _Request] = {}
    for request in batch:
        first.setdefault(_key(request.notification), request)
    now = utcnow()
    rows = [_row(request.notification, now) for request in first.values()]
    # Autocommit: the INSERT is atomic and durable on its own; the SELECT reads committed rows.
    with connection.begin():
        # The unique constraint decides between concurrent copies, also across processes.
        # executemany: SQLAlchemy sends one multi-row INSERT ("insertmanyvalues") from a
        # statement compiled once and cached, unlike `.values(rows)`.
        inserted = {
            (account_id, webhook_id): event_id
            for account_id, webhook_id, event_id in connection.execute(
                dialect_insert(EVENTS, connection)
                .on_conflict_do_nothing(index_elements=["account_id", "webhook_id"])
                .returning(EVENTS.c.account_id, EVENTS.c.webhook_id, EVENTS.c.id),
                rows,
            ).all()
        }
        existing = set(first) - set(inserted)
        found = (
            {
                (account_id, webhook_id): event_id
                for account_id, webhook_id, event_id in connection.execute(
                    select(EVENTS.c.account_id, EVENTS.c.webhook_id, EVENTS.c.id).where(
                        tuple_(EVENTS.c.account_id, EVENTS.c.webhook_id).in_(existing)
                    )
                ).all()
            }
            if existing
            else {}
        )
    created = []
    for request in batch:
        key = _key(request.notification)
        if first[key] is request and key in inserted:
            request.result = StoredEvent(inserted[key], created=True, queued=False)
            created.append(request)
        elif key in inserted or key in found:
            event_id = inserted.get(key) or found[key]
            request.result = StoredEvent(event_id, created=False, queued=False)
        else:
            request.error = NotStoredError(
                f"notification {key[1]} was neither stored nor found after the commit "
                f"(account {key[0]})"
            )
    return created


def _key(notification: Notification) -> tuple[int, str]:
    return notification.account_id, notification.webhook_id


def _row(notification: Notification, now: Any) -> dict[str, Any]:
    # Due at once: if it never reaches a queue it stays `pending` with this due time.
    return {
        "account_id": notification.account_id,
        "webhook_id": notification.webhook_id,
        "source": notification.source,
        "type": notification.type,
        "action": notification.action,
        "resource_id": notification.resource_id,
        "payload": notification.payload,
        "raw_body": notification.raw_body,
        "headers": notification.headers,
        "query": notification.query,
        "status": EventStatus.PENDING,
        "attempts": 0,
        "attempts_at_replay": 0,
        "next_retry_at": now,
        "received_at": now,
        "updated_at": now,
    }


def _enqueue(created: list[_Request]) -> None:
    """Queue the first attempt of each new event, in one Redis round trip."""
    if not created:
        return
    ids = [request.result.id for request in created if request.result]
    traces = {request.result.id: request.trace for request in created if request.result}
    try:
        types = {r.result.id: r.notification.type for r in created if r.result}
        accounts = {r.result.id: r.notification.account_id for r in created if r.result}
        queueing.enqueue_events(
            [(event_id, 1) for event_id in ids], traces=traces, types=types, accounts=accounts
        )
    except RedisError as exc:
        logger.warning("Redis unavailable, events %s not queued (stay pending): %s", ids, exc)
        return
    for request in created:
        assert request.result is not None
        request.result = StoredEvent(request.result.id, created=True, queued=True)


def init_app(app: Flask) -> None:
    """Give the app its writer (one per process: gunicorn forks before the first request)."""
    app.extensions["event_writer"] = EventWriter(app.config["INGEST_MAX_BATCH"])


def store_event(notification: Notification) -> StoredEvent:
    """Commit a notification and queue its first attempt; a redelivery returns the stored id.

    Raises SQLAlchemyError or NotStoredError when the database cannot store it
    (answer 5xx: the sender delivers it again later). A Redis failure is not an error: the event
    is committed `pending`, due now, and the reconciler queues it.
    """
    return current_app.extensions["event_writer"].store(notification)
