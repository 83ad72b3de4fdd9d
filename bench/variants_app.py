"""The real app plus routes that each do part of `POST /webhooks/mp`'s work.

`gunicorn variants_app:app` (bench/ on PYTHONPATH). `/bench/<variant>/webhooks/mp`
runs the service's own functions, cumulatively, so that the cost of each step
shows as the difference between two variants:

- parse:         parse_notification + verify_signature (no I/O)
- lpush:         parse + one Redis LPUSH of the body
- enqueue:       parse + RQ enqueue (queueing.enqueue_event) of a made-up event id
- store:         parse + the group-committed INSERT (ingest.EventWriter), no Redis
- store_enqueue: parse + store_event (group commit + RQ enqueue of the batch's new
                 events): the endpoint minus its log line and metrics

The real endpoint (`wsgi:app`, `/webhooks/mp`) adds the INFO log line on top.

Three prototypes of a cheaper store, measured to size the proposals in BENCHMARKS.md
(they are not the service's code):

- store_core:      parse + one Core `INSERT ... ON CONFLICT DO NOTHING RETURNING id`
                   and COMMIT through the app's session (no ORM flush, no refresh)
- store_min_lpush: parse + the same INSERT on an AUTOCOMMIT engine without
                   pre-ping (one round trip, committed when it returns) + one LPUSH
                   of the event id (what a dispatcher would move to RQ in batches)
- store_lpush:     parse + the service's group commit, then one LPUSH of the batch's
                   new event ids instead of RQ's `enqueue_many`; `python variants_app.py`
                   is the dispatcher that turns those ids into RQ jobs (bench/ingest.py
                   runs it beside this variant, so its CPU is paid on the same machine)
"""

from __future__ import annotations

import random

from flask import current_app, jsonify, request
from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webhooks_app import create_app, ingest
from webhooks_app.extensions import db
from webhooks_app.ingest import store_event
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.notifications import parse_notification
from webhooks_app.queueing import enqueue_event, enqueue_events, get_redis, make_redis
from webhooks_app.signatures import verify_signature
from webhooks_app.timeutil import utcnow

app = create_app()
_ids = random.Random()


def _parse():
    notification = parse_notification(
        request.get_data(), request.content_type, request.args, request.headers
    )
    config = current_app.config
    verify_signature(
        config["MP_WEBHOOK_SECRET"],
        request.headers.get("x-signature"),
        request.headers.get("x-request-id"),
        notification.signed_data_id,
        tolerance=config["MP_SIGNATURE_TOLERANCE"],
    )
    return notification


@app.post("/bench/parse/webhooks/mp")
def parse_only():
    _parse()
    return jsonify({"status": "accepted"}), 200


@app.post("/bench/lpush/webhooks/mp")
def lpush():
    notification = _parse()
    get_redis().lpush("bench:lpush", notification.raw_body)
    return jsonify({"status": "accepted"}), 200


@app.post("/bench/enqueue/webhooks/mp")
def enqueue():
    _parse()
    event_id = _ids.getrandbits(62)
    enqueue_event(event_id, 1)
    return jsonify({"status": "accepted", "event_id": event_id}), 200


# The service's writer without its Redis step: the same group commit, no enqueue.
_store_only = ingest.EventWriter(app.config["INGEST_MAX_BATCH"], enqueue=False)


@app.post("/bench/store/webhooks/mp")
def store():
    stored = _store_only.store(_parse())
    return jsonify({"status": "accepted", "event_id": stored.id}), 200


@app.post("/bench/store_enqueue/webhooks/mp")
def store_enqueue():
    stored = store_event(_parse())
    return jsonify({"status": "accepted", "event_id": stored.id}), 200


_URI = app.config["SQLALCHEMY_DATABASE_URI"]
_INSERT = pg_insert if _URI.startswith("postgresql") else sqlite_insert
_min_engine = None


def _insert_statement(notification):
    now = utcnow()
    return (
        _INSERT(WebhookEvent)
        .values(
            webhook_id=notification.webhook_id,
            source=notification.source,
            type=notification.type,
            action=notification.action,
            resource_id=notification.resource_id,
            payload=notification.payload,
            raw_body=notification.raw_body,
            headers=notification.headers,
            query=notification.query,
            status=EventStatus.PENDING,
            attempts=0,
            attempts_at_replay=0,
            next_retry_at=now,
            received_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["webhook_id"])
        .returning(WebhookEvent.id)
    )


@app.post("/bench/store_core/webhooks/mp")
def store_core():
    event_id = db.session.execute(_insert_statement(_parse())).scalar()
    db.session.commit()
    return jsonify({"status": "accepted", "event_id": event_id}), 200


@app.post("/bench/store_min_lpush/webhooks/mp")
def store_min_lpush():
    global _min_engine
    if _min_engine is None:  # per worker process, after gunicorn's fork
        _min_engine = create_engine(_URI, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    with _min_engine.connect() as conn:
        event_id = conn.execute(_insert_statement(_parse())).scalar()
    get_redis().lpush("bench:dispatch", event_id)
    return jsonify({"status": "accepted", "event_id": event_id}), 200


# -- store_lpush: the request path of a design where a dispatcher queues the jobs --
DISPATCH_KEY = "bench:store_lpush"


class _LpushWriter(ingest.EventWriter):
    """The service's group commit, then the batch's new ids in one LPUSH (no RQ).

    The LPUSH runs before the pen is handed over (the service enqueues after): one
    Redis round trip more per batch for the next writer to wait, so slightly pessimistic.
    """

    def _insert_or_split(self, batch):
        created = super()._insert_or_split(batch)
        if created:
            get_redis().lpush(DISPATCH_KEY, *[request.result.id for request in created])
        return created


_store_lpush = _LpushWriter(app.config["INGEST_MAX_BATCH"], enqueue=False)


@app.post("/bench/store_lpush/webhooks/mp")
def store_lpush():
    stored = _store_lpush.store(_parse())
    return jsonify({"status": "accepted", "event_id": stored.id}), 200


def dispatch_forever() -> None:
    """The other half of store_lpush: take the pushed ids, queue their RQ jobs in batches."""
    with app.app_context():
        redis = make_redis(app.config["REDIS_URL"], 30.0)  # longer than BLPOP's wait
        while True:
            popped = redis.blpop([DISPATCH_KEY], timeout=10)
            if popped is None:
                continue
            ids = [popped[1], *(redis.lpop(DISPATCH_KEY, 500) or [])]
            enqueue_events([(int(event_id), 1) for event_id in ids])


if __name__ == "__main__":
    dispatch_forever()
