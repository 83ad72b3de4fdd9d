"""The reconciler: expired leases and due events missing from Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq.job import Job
from sqlalchemy import delete

from webhooks_app.attempts import _record_success
from webhooks_app.claims import Claim, claim_event
from webhooks_app.extensions import db
from webhooks_app.handlers import HandlerResult as PipelineResult
from webhooks_app.models import AttemptOutcome, EventStatus, WebhookAttempt, WebhookEvent
from webhooks_app.queueing import get_queue, get_redis, get_scheduler, job_id
from webhooks_app.reconciler import reconcile
from webhooks_app.timeutil import utcnow

from conftest import make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


def receive(client, sandbox) -> int:
    payment = sandbox.state.add_payment()
    return post_webhook(client, payment["id"]).json["event_id"]


def event(event_id: int) -> WebhookEvent:
    db.session.expire_all()
    return db.session.get(WebhookEvent, event_id)


def claim_and_die(event_id: int, *, with_attempt: bool = True) -> None:
    """What a worker SIGKILLed mid-attempt leaves behind: a claim whose lease has run out."""
    claim = claim_event(event_id)
    assert claim is not None
    if not with_attempt:  # a row lost some other way: the reconciler must cope
        db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.id == claim.attempt_id))
    stored = event(event_id)
    stored.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()


def test_expired_lease_counts_as_a_lost_attempt_and_retries_at_once(app, client, sandbox):
    event_id = receive(client, sandbox)
    get_queue(app).empty()
    claim_and_die(event_id)

    report = reconcile()
    assert report.leases_expired == [event_id]
    stored = event(event_id)
    assert stored.status == EventStatus.PENDING and stored.next_retry_at <= utcnow()
    (lost,) = stored.attempt_log
    assert lost.outcome == AttemptOutcome.LOST and "lease expired" in lost.error
    assert get_queue(app).job_ids == [job_id(event_id, 2)]

    run_worker(app)
    stored = event(event_id)
    assert stored.status == EventStatus.SUCCESS and stored.attempts == 2
    assert len(sandbox.state.calls(api="gohighlevel", path_contains="/tags")) == 1


def test_worker_that_died_before_recording_its_attempt(app, client, sandbox):
    event_id = receive(client, sandbox)
    claim_and_die(event_id, with_attempt=False)
    reconcile()
    (lost,) = event(event_id).attempt_log
    assert lost.number == 1 and lost.outcome == AttemptOutcome.LOST


def test_lease_lost_on_the_last_attempt_dead_letters(app, client, sandbox):
    event_id = receive(client, sandbox)
    stored = event(event_id)
    stored.attempts = len(app.config["RETRY_DELAYS"])
    db.session.commit()
    claim_and_die(event_id)
    reconcile()
    assert event(event_id).status == EventStatus.FAILED


def test_live_lease_is_left_alone(app, client, sandbox):
    event_id = receive(client, sandbox)
    assert claim_event(event_id)
    assert reconcile().leases_expired == []
    assert event(event_id).status == EventStatus.PROCESSING


def test_a_late_worker_cannot_overwrite_what_the_reconciler_decided(app, client, sandbox):
    event_id = receive(client, sandbox)
    get_queue(app).empty()
    claim_and_die(event_id)
    (attempt,) = event(event_id).attempt_log
    reconcile()
    # The "dead" worker was only slow: it now reports success for attempt 1.
    late = Claim(attempt.id, attempt.number, attempt.started_at)
    assert _record_success(event_id, late, PipelineResult(EventStatus.SUCCESS)) == (
        EventStatus.PENDING
    )
    run_worker(app)
    assert event(event_id).status == EventStatus.SUCCESS and event(event_id).attempts == 2


def test_due_events_missing_from_redis_are_requeued_once(app, client, sandbox):
    ids = [receive(client, sandbox) for _ in range(3)]
    get_redis(app).flushdb()  # Redis restarted empty
    past = utcnow() - timedelta(seconds=app.config["RECONCILE_GRACE"] + 1)
    db.session.query(WebhookEvent).update({"next_retry_at": past})
    db.session.commit()

    assert sorted(reconcile().requeued) == ids
    assert reconcile().requeued == []  # idempotent: the jobs are queued now
    assert len(get_queue(app).job_ids) == 3
    run_worker(app)
    assert {event(i).status for i in ids} == {EventStatus.SUCCESS}


def test_recent_due_events_get_the_normal_path_first(app, client, sandbox):
    receive(client, sandbox)
    get_redis(app).flushdb()
    assert reconcile().requeued == []  # within RECONCILE_GRACE of being due


def test_missed_scheduled_retry_is_moved_to_the_queue_once(app, client, sandbox):
    event_id = receive(client, sandbox)
    get_queue(app).empty()
    due = utcnow() - timedelta(seconds=app.config["RECONCILE_GRACE"] + 1)
    stored = event(event_id)
    stored.next_retry_at = due
    db.session.commit()
    scheduler = get_scheduler(app)
    scheduler.enqueue_at(
        due, "webhooks_app.processing.process_event", event_id, job_id=job_id(event_id, 1)
    )
    assert reconcile().requeued == [event_id]
    assert list(scheduler.get_jobs()) == []  # not run a second time by rq-scheduler
    assert Job.fetch(job_id(event_id, 1), connection=get_redis(app)).get_status() == "queued"


def test_redis_down_still_takes_back_expired_leases(app, client, sandbox):
    event_id = receive(client, sandbox)
    claim_and_die(event_id)
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        report = reconcile()
    assert report.leases_expired == [event_id]
    stored = event(event_id)  # not queued, but due: the next pass with Redis queues it
    assert stored.status == EventStatus.PENDING and stored.next_retry_at <= utcnow()
