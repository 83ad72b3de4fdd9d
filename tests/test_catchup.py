"""Catch-up: events for payments MercadoPago changed but never notified us about."""

from __future__ import annotations

from datetime import timedelta

import pytest

from webhooks_app.catchup import catch_up
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookEvent
from webhooks_app.timeutil import utcnow

from conftest import drain, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


def test_catch_up_creates_events_only_for_payments_we_lack_or_hold_older(app, client, sandbox):
    known = sandbox.state.add_payment(status="approved")
    post_webhook(client, known["id"])
    run_worker(app)
    changed = sandbox.state.add_payment(status="approved")
    post_webhook(client, changed["id"])
    run_worker(app)
    sandbox.state.add_payment(id=changed["id"], status="refunded")  # never notified
    missed = sandbox.state.add_payment(status="approved")  # never notified

    report = catch_up(since=utcnow() - timedelta(hours=1))
    assert report.scanned == 3 and len(report.created) == 2
    created = db.session.query(WebhookEvent).filter(WebhookEvent.id.in_(report.created)).all()
    assert {e.resource_id for e in created} == {str(changed["id"]), str(missed["id"])}
    assert {(e.source, e.type, e.action) for e in created} == {("catch_up", "payment", "catch_up")}
    assert catch_up(since=utcnow() - timedelta(hours=1)).created == []  # nothing new

    drain(app)
    statuses = {p.mp_payment_id: p.status for p in db.session.query(Payment)}
    assert statuses == {
        str(known["id"]): "approved",
        str(changed["id"]): "refunded",
        str(missed["id"]): "approved",
    }


def test_catch_up_resumes_from_its_cursor(app, sandbox):
    sandbox.state.add_payment()
    assert len(catch_up().created) == 1  # first run: the configured look-back
    drain(app)
    later = sandbox.state.add_payment()
    report = catch_up()
    assert report.since > utcnow() - timedelta(minutes=10)  # from the cursor, not 6 hours back
    assert [db.session.get(WebhookEvent, i).resource_id for i in report.created] == [
        str(later["id"])
    ]


def test_catch_up_is_off_without_an_access_token(app, sandbox):
    off = make_app(sandbox, MP_ACCESS_TOKEN=None)
    with off.app_context():
        assert catch_up().skipped_reason == "no MP_ACCESS_TOKEN configured"


def test_catch_up_cli(app, sandbox, runner):
    sandbox.state.add_payment()
    result = runner.invoke(args=["webhooks", "catch-up", "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    assert "scanned 1 payment(s)" in result.output and "created 1 event(s)" in result.output
    assert db.session.query(WebhookEvent).one().status == EventStatus.PENDING
