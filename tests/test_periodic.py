"""The scheduler loop: rq-scheduler moves, the reconciler and catch-up, surviving outages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from accounts_support import create_account

from webhooks_app.catchup import catch_up_accounts
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.periodic import build_tasks, run_forever
from webhooks_app.queueing import get_queue, get_redis, get_scheduler, job_id, make_redis
from webhooks_app.timeutil import utcnow

from conftest import make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


def test_one_round_moves_due_retries_reconciles_and_catches_up(app, client, sandbox):
    scheduled = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
    get_queue(app).empty()
    get_scheduler(app).enqueue_at(
        utcnow() - timedelta(seconds=1),
        "webhooks_app.processing.process_event",
        scheduled,
        job_id=job_id(scheduled, 1),
    )
    lost = post_webhook(client, sandbox.state.add_payment()["id"]).json["event_id"]
    get_redis(app).delete(f"rq:job:{job_id(lost, 1)}")
    db.session.get(WebhookEvent, lost).next_retry_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    missed = sandbox.state.add_payment()  # MercadoPago never notified this one

    run_forever(app, get_redis(app), once=True)

    queued = get_queue(app).job_ids
    assert job_id(scheduled, 1) in queued and job_id(lost, 1) in queued
    run_worker(app)
    db.session.expire_all()
    events = db.session.query(WebhookEvent).all()
    assert len(events) == 3 and {e.status for e in events} == {EventStatus.SUCCESS}
    assert str(missed["id"]) in {e.resource_id for e in events}


def test_loop_survives_redis_being_down(sandbox, app):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        connection = make_redis(down.config["REDIS_URL"], 0.5)
        run_forever(down, connection, once=True)  # every task fails; none raises


def test_catch_up_runs_for_the_accounts_with_a_token_found_at_each_run(sandbox, app):
    """No token anywhere: the task runs and does nothing; an account given one later is
    caught up at the next run, without restarting the scheduler."""
    off = make_app(sandbox, MP_ACCESS_TOKEN=None, CATCH_UP_INTERVAL=600)
    assert "catch-up" in [t.name for t in build_tasks(off, get_redis(off))]
    with off.app_context():
        assert catch_up_accounts() == []
        create_account("shop-b")
        assert [report.account for report in catch_up_accounts()] == ["shop-b"]
    assert "catch-up" not in [
        t.name for t in build_tasks(make_app(sandbox, CATCH_UP_INTERVAL=0), get_redis(app))
    ]
