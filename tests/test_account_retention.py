"""Retention per account (issue 18): each account's finished events are purged after its own
retention (empty: RETENTION_DAYS; 0: never), in the same batches on the same index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from accounts_support import create_account, second_account
from factories import add_event
from sqlalchemy import text

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.periodic import build_tasks
from webhooks_app.queueing import get_redis
from webhooks_app.retention import purge_round, retention_groups
from webhooks_app.retention_batch import (
    AccountScope,
    _postgresql_statement,
    next_batch_sql,
)
from webhooks_app.timeutil import utcnow

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shop_b(app):
    yield from second_account()


def finished(days_ago: float, account_id: int = 1) -> int:
    when = utcnow() - timedelta(days=days_ago)
    return add_event(
        status=EventStatus.SUCCESS, received_at=when, latency=1, account_id=account_id
    ).id


def purged() -> set[int]:
    db.session.expire_all()
    return {e.id for e in db.session.query(WebhookEvent) if e.purged_at is not None}


def test_each_account_keeps_its_events_for_its_own_retention(app, shop_b):
    db.session.execute(
        text("UPDATE accounts SET retention_days = 365 WHERE id = :id"), {"id": shop_b.id}
    )
    db.session.commit()
    keeps = create_account("shop-c", location="loc-c", retention_days=0).id  # keeps everything
    short = create_account("shop-d", location="loc-d", retention_days=30).id
    same = create_account("shop-e", location="loc-e", retention_days=90).id  # as the deployment
    app.config.update(RETENTION_DAYS=90, RETENTION_BATCH_SIZE=2)
    events = {
        "default 100d": finished(100),
        "default 40d": finished(40),
        "shop-b 100d": finished(100, shop_b.id),
        "shop-b 400d": finished(400, shop_b.id),
        "shop-c 400d": finished(400, keeps),
        "shop-d 40d": finished(40, short),
        "shop-d 10d": finished(10, short),
        "shop-e 100d": finished(100, same),
    }
    groups = retention_groups()
    assert [scope for _, scope in groups] == [
        AccountScope(tuple(sorted([shop_b.id, keeps, short])), exclude=True),  # RETENTION_DAYS
        AccountScope((short,)),  # 30 days
        AccountScope((shop_b.id,)),  # 365 days
    ]

    report = purge_round()
    assert report.events == 4 and not report.more
    assert purged() == {
        events[name] for name in ("default 100d", "shop-b 400d", "shop-d 40d", "shop-e 100d")
    }


def test_one_retention_is_the_unscoped_purge_of_before(app, shop_b):
    assert retention_groups()[0][1] is None  # no account has its own: no account filter
    old = finished(100)
    theirs = finished(100, shop_b.id)
    assert purge_round().events == 2 and purged() == {old, theirs}


def test_an_accounts_retention_runs_even_when_the_deployment_keeps_everything(app, shop_b):
    db.session.execute(
        text("UPDATE accounts SET retention_days = 30 WHERE id = :id"), {"id": shop_b.id}
    )
    db.session.commit()
    app.config["RETENTION_DAYS"] = 0
    ours, theirs = finished(400), finished(40, shop_b.id)
    assert "retention" in [t.name for t in build_tasks(app, get_redis(app))]
    assert purge_round().events == 1 and purged() == {theirs} and ours not in purged()


def test_the_cli_purges_by_each_accounts_retention(app, shop_b, runner):
    db.session.execute(
        text("UPDATE accounts SET retention_days = 365 WHERE id = :id"), {"id": shop_b.id}
    )
    db.session.commit()
    finished(100)
    finished(100, shop_b.id)
    dry = runner.invoke(args=["webhooks", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0].startswith(f"dry run: [every account but {shop_b.id}] would purge 1 event(s)")
    assert lines[1].startswith(f"dry run: [accounts {shop_b.id}] would purge 0 event(s)")
    everyone = runner.invoke(args=["webhooks", "purge", "--older-than", "30d"])
    assert everyone.exit_code == 0 and "purged 2 event(s)" in everyone.output


def test_a_scoped_batch_still_reads_the_partial_index(app):
    """The account filter is on rows the same index scan reads: no sort, no table scan."""
    now = utcnow()
    ids = "(2, 3)"  # what the expanding parameter renders
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            sql = next_batch_sql("sqlite", AccountScope((2, 3))).replace(":account_ids", ids)
            params = {"cutoff": now.isoformat(sep=" "), "size": 500}
            plan = " ".join(
                str(row) for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params)
            )
            assert "TEMP B-TREE" not in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off"))
            params = {"cutoff": now, "before": now, "now": now, "size": 500}
            sql = _postgresql_statement(False, "exclude").text.replace(":account_ids", ids)
            plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + sql), params))
            batch = plan[plan.index("CTE batch") : plan.index("CTE purged")]
            assert "Sort" not in batch and "Seq Scan" not in plan, plan
            assert "account_id" in batch, plan
    assert "ix_webhook_events_purge_due" in plan, plan
