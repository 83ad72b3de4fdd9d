"""An account's stranded events go back onto its own queue (issue 18): the reconciler's
re-enqueue and a resume's drain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from accounts_support import second_account
from factories import add_event

from webhooks_app.models import EventStatus
from webhooks_app.pausing import pause, resume
from webhooks_app.queueing import account_queue_name, get_queue, job_id
from webhooks_app.reconciler import reconcile
from webhooks_app.timeutil import utcnow

from conftest import drain, events

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shop_b(app):
    yield from second_account()


def queued(app, account_id: int) -> list[str]:
    return get_queue(app, name=account_queue_name(account_id, app)).job_ids


def test_the_reconciler_requeues_a_stranded_event_onto_its_accounts_queue(app, shop_b, sandbox):
    payment = sandbox.state.add_payment()
    stranded = add_event(
        account_id=shop_b.id,
        resource_id=str(payment["id"]),
        payload={"data": {"id": str(payment["id"])}},
        next_retry_at=utcnow() - timedelta(minutes=5),
    )
    report = reconcile()
    assert report.requeued == [stranded.id]
    assert queued(app, shop_b.id) == [job_id(stranded.id, 1)]
    assert queued(app, 1) == []  # not the default account's queue
    drain(app)
    assert [(e.account_id, e.status) for e in events()] == [(shop_b.id, EventStatus.SUCCESS)]


def test_a_resume_drains_each_event_onto_its_accounts_queue(app, shop_b):
    pause("all", "maintenance", "ops")
    theirs = add_event(account_id=shop_b.id, next_retry_at=utcnow() - timedelta(minutes=5))
    ours = add_event(next_retry_at=utcnow() - timedelta(minutes=5))
    assert reconcile().requeued == []  # held by the pause
    report = resume("all", "ops")
    assert report.enqueued == 2
    assert queued(app, shop_b.id) == [job_id(theirs.id, 1)]
    assert queued(app, 1) == [job_id(ours.id, 1)]
