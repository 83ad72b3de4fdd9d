"""POST /webhooks/mp: verify, store first, enqueue, answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rq.job import Job

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_queue
from webhooks_app.signatures import sign

from conftest import WEBHOOK_SECRET, make_app, notification, post_webhook


def stored_events() -> list[WebhookEvent]:
    db.session.expire_all()
    return list(db.session.query(WebhookEvent).order_by(WebhookEvent.id))


def test_signed_notification_is_stored_before_processing_and_queued(app, client, sandbox):
    body = notification(555, notification_id=9001)
    response = post_webhook(client, 555, body=body, request_id="req-1")

    assert response.status_code == 200
    event_id = response.json["event_id"]
    assert response.json["status"] == "accepted"
    (event,) = stored_events()
    assert event.id == event_id
    assert (event.webhook_id, event.source, event.type, event.action, event.resource_id) == (
        "mp:9001",
        "webhook",
        "payment",
        "payment.updated",
        "555",
    )
    assert json.loads(event.raw_body) == body and event.payload == body
    assert event.headers["x-request-id"] == "req-1" and "x-signature" in event.headers
    assert event.query == {"data.id": "555", "type": "payment"}
    assert event.status == EventStatus.PENDING and event.attempts == 0
    assert event.next_retry_at is not None and event.received_at is not None
    # Queued, not processed: no API was called during the request.
    queue = get_queue(app)
    assert queue.job_ids == [f"event-{event_id}-attempt-1"]
    assert Job.fetch(queue.job_ids[0], connection=queue.connection).args == (event_id,)
    assert sandbox.state.calls() == []


@pytest.mark.parametrize("signature", [None, "ts=1,v1=deadbeef", "nonsense"])
def test_missing_or_wrong_signature_is_401_and_stores_nothing(client, signature):
    headers = {"x-request-id": "r"}
    if signature:
        headers["x-signature"] = signature
    response = client.post(
        "/webhooks/mp?data.id=1&type=payment", json=notification(1), headers=headers
    )
    assert response.status_code == 401
    assert "signature" in response.json["error"]
    assert stored_events() == []


def test_signature_of_another_payment_is_rejected(client):
    headers = {"x-request-id": "r", "x-signature": sign(WEBHOOK_SECRET, "2", "r")}
    response = client.post(
        "/webhooks/mp?data.id=1&type=payment", json=notification(1), headers=headers
    )
    assert response.status_code == 401
    assert stored_events() == []


def test_without_a_secret_unsigned_notifications_are_accepted(app, sandbox):
    app = make_app(sandbox, MP_WEBHOOK_SECRET=None)
    with app.app_context():
        response = post_webhook(app.test_client(), 3, secret=None)
        assert response.status_code == 200
        assert len(stored_events()) == 1


def test_ipn_form_is_accepted_unsigned(client):
    response = client.post("/webhooks/mp?topic=payment&id=4242", headers={"x-request-id": "i1"})
    assert response.status_code == 200
    (event,) = stored_events()
    assert (event.source, event.type, event.resource_id, event.action) == (
        "ipn",
        "payment",
        "4242",
        None,
    )


def test_ipn_can_be_refused(app, sandbox):
    app = make_app(sandbox, MP_ACCEPT_IPN=False)
    with app.app_context():
        response = app.test_client().post("/webhooks/mp?topic=payment&id=4242")
        assert response.status_code == 403
        assert "IPN" in response.json["error"]
        assert stored_events() == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{broken", "application/json", 400),
        ('{"type": "payment", "id": 1}', "application/json", 400),
        ("a=b", "application/x-www-form-urlencoded", 415),
        ("[]", "application/json", 400),
        ("", None, 400),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(client, data, content_type, status):
    response = client.post("/webhooks/mp", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.is_json and response.json["error"]
    assert stored_events() == []


def test_oversize_body_is_413(app, client):
    body = notification(1)
    body["padding"] = "x" * app.config["MAX_CONTENT_LENGTH"]
    response = post_webhook(client, 1, body=body)
    assert response.status_code == 413
    assert response.is_json and "error" in response.json
    assert stored_events() == []


def test_redelivery_creates_nothing(app, client):
    body = notification(77, notification_id=123)
    answers = [post_webhook(client, 77, body=body, request_id="same") for _ in range(10)]
    assert {r.status_code for r in answers} == {200}
    assert answers[0].json["status"] == "accepted"
    assert {r.json["status"] for r in answers[1:]} == {"duplicate"}
    assert {r.json["event_id"] for r in answers} == {answers[0].json["event_id"]}
    assert len(stored_events()) == 1
    assert len(get_queue(app).job_ids) == 1


@pytest.mark.timeout(60)
def test_concurrent_redeliveries_create_one_event(app):
    body = notification(78, notification_id=124)
    barrier = threading.Barrier(10)
    answers: list = []

    def deliver() -> None:
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            answers.append(post_webhook(client, 78, body=body, request_id="same"))

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [200] * 10
    assert sorted(r.json["status"] for r in answers).count("accepted") == 1
    assert len(stored_events()) == 1
    assert len(get_queue(app).job_ids) == 1


def test_new_notification_about_the_same_payment_is_a_new_event(client):
    first = post_webhook(client, 90, notification_id=1)
    second = post_webhook(client, 90, notification_id=2)
    assert first.json["event_id"] != second.json["event_id"]
    assert len(stored_events()) == 2


def test_database_down_answers_503(sandbox):
    app = make_app(sandbox, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/x")
    with app.app_context():
        response = post_webhook(app.test_client(), 5)
    assert response.status_code == 503
    assert "unable to store" in response.json["error"]


@contextmanager
def inserts_silently_skipped(webhook_id: str) -> Iterator[None]:
    """A trigger makes the database drop this notification's row without an error."""
    if db.engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER skip_row BEFORE INSERT ON webhook_events "
            f"WHEN NEW.webhook_id = '{webhook_id}' BEGIN SELECT RAISE(IGNORE); END"
        ]
        drop = ["DROP TRIGGER skip_row"]
    else:
        create = [
            "CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.webhook_id = '{webhook_id}' THEN RETURN NULL; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER skip_row BEFORE INSERT ON webhook_events "
            "FOR EACH ROW EXECUTE FUNCTION skip_row()",
        ]
        drop = ["DROP TRIGGER skip_row ON webhook_events", "DROP FUNCTION skip_row()"]
    with db.engine.begin() as connection:
        for statement in create:
            connection.exec_driver_sql(statement)
    try:
        yield
    finally:
        with db.engine.begin() as connection:
            for statement in drop:
                connection.exec_driver_sql(statement)


def test_a_row_the_database_drops_silently_answers_503(client, app, caplog):
    """Neither stored nor found after the commit: not a 200, so MercadoPago sends it again."""
    with inserts_silently_skipped("mp:77"):
        response = post_webhook(client, 7, notification_id=77)
    assert response.status_code == 503
    assert "mp:77 was neither stored nor found" in caplog.text
    assert "unable to store" in response.json["error"]
    assert stored_events() == [] and get_queue(app).job_ids == []
    assert post_webhook(client, 7, notification_id=77).status_code == 200  # the redelivery


def test_redis_down_still_stores_and_answers_200(sandbox, app):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        response = post_webhook(down.test_client(), 6)
        assert response.status_code == 200
        (event,) = stored_events()
        assert event.status == EventStatus.PENDING
        assert event.next_retry_at is not None and event.next_retry_at <= event.received_at
    assert get_queue(app).job_ids == []
