"""`flask webhooks …`: the operator's commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.orm import selectinload

from .attempts import process_event
from .cli_accounts import ACCOUNT_OPTION, account_id_of, accounts_cli, not_found
from .filters import EventFilter, FilterError, parse_event_filter
from .jobs import event_jobs
from .lookups import event_detail, find_event
from .models import EventStatus, WebhookEvent
from .pagination import capped_count, keyset_page
from .replays import RetryReport, retry_ids, retry_matching
from .retries import due_events
from .stats import dashboard

webhooks_cli = AppGroup("webhooks", help="Process, replay, inspect and simulate webhook events.")

LIST_MAX = 500


def init_app(app: Flask) -> None:
    from . import cli_privacy  # noqa: F401 - registers purge and forget on webhooks_cli

    webhooks_cli.add_command(accounts_cli)
    app.cli.add_command(webhooks_cli)


@webhooks_cli.command("process")
@click.option("--loop", is_flag=True, help="Keep going: poll for due events until interrupted.")
@click.option(
    "--interval", default=5.0, show_default=True, help="Seconds between polls with --loop."
)
@click.option("--limit", default=100, show_default=True, help="Events per batch.")
def process_command(loop: bool, interval: float, limit: int) -> None:
    """Process due pending events here, without a worker (also a fallback when Redis is down)."""
    while True:
        ids = due_events(limit)
        for event_id in ids:
            status = process_event(event_id)
            click.echo(f"event {event_id}: {status}")
        if not loop:
            click.echo(f"processed {len(ids)} due event(s)")
            return
        time.sleep(interval)


def event_filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The event filter as options: the same names and values as the API's parameters."""
    options = [
        ACCOUNT_OPTION,
        click.option("--status", help="One or more comma-separated statuses, e.g. failed."),
        click.option("--type", "event_type", help="Notification type, e.g. payment."),
        click.option("--since", help="Received at or after: 2026-11-29, 2026-11-29T10:00Z, 2h."),
        click.option("--until", help="Received before (a bare date includes that day)."),
        click.option(
            "-q", "--query", "q", help="Webhook id or resource id, or part of the payer's e-mail."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_filter_options(
    status: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    account: str | None = None,
) -> EventFilter:
    """The options through the shared filter parser; a bad value is a usage error (exit 2)."""
    try:
        return parse_event_filter(
            {
                "account": account,
                "status": status,
                "type": event_type,
                "since": since,
                "until": until,
                "q": q,
            }
        )
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None


@webhooks_cli.command("list")
@event_filter_options
@click.option("--limit", default=50, show_default=True, help="Events to show (at most 500).")
@click.option(
    "--order",
    type=click.Choice(["desc", "asc"]),
    default="desc",
    show_default=True,
    help="By received time.",
)
@click.option("--cursor", help="Continue after the last page (printed at its end).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/webhook-events.")
def list_command(
    account: str | None,
    status: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    limit: int,
    order: str,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List events, newest first, with the same filters as the API and the admin."""
    event_filter = parse_filter_options(status, event_type, since, until, q, account)
    if not 1 <= limit <= LIST_MAX:
        raise click.UsageError(f"--limit must be between 1 and {LIST_MAX}")
    query = event_filter.query().options(selectinload(WebhookEvent.payment))
    try:
        page = keyset_page(
            query,
            WebhookEvent.received_at,
            WebhookEvent.id,
            limit=limit,
            after=cursor,
            descending=order == "desc",
            after_param="--cursor",
        )
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None
    total, exact = capped_count(query)
    if as_json:
        events = [event.to_dict() for event in page.items]
        data = {"events": events, "total": total, "total_exact": exact}
        click.echo(json.dumps({**data, "next_cursor": page.next_cursor}, indent=2))
        return
    click.echo(
        f"{'ID':>8}  {'RECEIVED (UTC)':<19}  {'STATUS':<10}  {'TYPE':<14}  "
        f"{'RESOURCE':<14}  {'ATT':>3}  LAST ERROR"
    )
    for event in page.items:
        click.echo(
            f"{event.id:>8}  {event.received_at:%Y-%m-%d %H:%M:%S}  {event.status:<10}  "
            f"{event.type[:14]:<14}  {event.resource_id[:14]:<14}  {event.attempts:>3}  "
            f"{_shorten(event.last_error or '', 60)}"
        )
    matching = f"{total}" if exact else f"more than {total}"
    click.echo(
        f"{len(page.items)} shown of {matching} matching event(s) ({event_filter.describe()})"
    )
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}")


@webhooks_cli.command("show")
@click.argument("event_id", type=int)
@ACCOUNT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/webhook-events/ID.")
def show_command(event_id: int, account: str | None, as_json: bool) -> None:
    """Show one event: what was received, every attempt, its payment, its jobs in Redis."""
    event = find_event(event_id, account_id_of(account))
    if event is None:
        raise not_found(f"event {event_id}", account)
    if as_json:
        click.echo(json.dumps(event_detail(event), indent=2, default=str))
        return
    rq = event_jobs(event)
    fields = [
        ("event", event.id),
        ("status", event.status),
        ("webhook id", event.webhook_id),
        ("source", event.source),
        ("type", f"{event.type} {event.action or ''}".strip()),
        ("resource id", event.resource_id),
        ("attempts", f"{event.attempts} ({event.attempts_this_round} since the last replay)"),
        ("last error", event.last_error or "-"),
        ("next due", _time(event.next_retry_at)),
        ("received", _time(event.received_at)),
        ("processed", _time(event.processed_at)),
        ("payment", _payment_line(event)),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<13}{value}")
    click.echo("attempts:")
    for attempt in event.attempt_log:
        took = "-" if attempt.duration_ms is None else f"{attempt.duration_ms} ms"
        click.echo(
            f"  #{attempt.number} {_time(attempt.started_at)} {took:>9} {attempt.outcome:<11} "
            f"{attempt.error or ''}"
        )
    if not event.attempt_log:
        click.echo("  (none yet)")
    if event.purged_at is not None:
        click.echo(f"payload:     purged on {_time(event.purged_at)} (retention or erasure)")
    else:
        click.echo("payload:")
        click.echo(json.dumps(event.payload, indent=2, default=str))
    click.echo("jobs in RQ:")
    if rq["error"]:
        click.echo(f"  {rq['error']}")
    for job in rq["jobs"]:
        when = job["scheduled_for"] or job["enqueued_at"] or "-"
        click.echo(f"  {job['id']}  {job['status']}  {when}")
    if not rq["jobs"] and not rq["error"]:
        click.echo("  (none: finished jobs expire after an hour)")


@webhooks_cli.command("replay")
@click.argument("event_ids", nargs=-1, type=int)
@event_filter_options
@click.option("--force", is_flag=True, help="Also replay events that already succeeded.")
@click.option("--dry-run", is_flag=True, help="Only list the events a filter would replay.")
def replay_command(
    event_ids: tuple[int, ...],
    account: str | None,
    status: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Re-queue events by id, or every event matching --status (and the other filters);
    with --account, only that account's (another account's event id is refused)."""
    filtering = any(value is not None for value in (status, event_type, since, until, q))
    if event_ids and filtering:
        raise click.UsageError("give event ids or filters, not both")
    if not event_ids and not status:
        raise click.UsageError("give event ids, or --status failed (with other filters if needed)")
    if event_ids:
        if dry_run:
            raise click.UsageError("--dry-run works with filters, not with event ids")
        report = retry_ids(event_ids, force=force, account_id=account_id_of(account))
    else:
        event_filter = parse_filter_options(status, event_type, since, until, q, account)
        report = retry_matching(event_filter, force=force, dry_run=dry_run)
    _print_report(report)


@webhooks_cli.command("retry-failed")
@event_filter_options
@click.option("--dry-run", is_flag=True, help="Only list the failed events that would be retried.")
def retry_failed_command(
    account: str | None,
    status: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    dry_run: bool,
) -> None:
    """Re-queue every failed (dead-lettered) event, or those matching the filters."""
    event_filter = parse_filter_options(status, event_type, since, until, q, account)
    failed = event_filter.restricted_to(EventStatus.FAILED)
    if failed is None:
        raise click.UsageError("--status must include failed (this command retries failed events)")
    _print_report(retry_matching(failed, dry_run=dry_run))


def _print_report(report: RetryReport) -> None:
    """One line per event, the summary, then the errors on stderr (exit 1 if any)."""
    if report.dry_run:
        for event_id in report.matched:
            click.echo(f"event {event_id}: would be re-queued")
        click.echo(f"dry run: {len(report.matched)} event(s) would be replayed")
        return
    not_queued = set(report.not_queued)
    for event_id in report.requeued:
        note = " (Redis down: left pending)" if event_id in not_queued else ""
        click.echo(f"event {event_id}: re-queued{note}")
    click.echo(f"replayed {len(report.requeued)} event(s)")
    errors = [f"event {event_id} does not exist" for event_id in report.missing]
    errors += list(report.refused.values())
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        raise SystemExit(1)


@webhooks_cli.command("stats")
@ACCOUNT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/stats.")
@click.option(
    "--hours",
    default=1,
    show_default=True,
    type=click.IntRange(1, 168),
    help="Window for throughput and latency.",
)
def stats_command(account: str | None, as_json: bool, hours: int) -> None:
    """Counts by status, success rate, throughput, latency, queue depth, oldest pending."""
    data = dashboard(hours, account_id=account_id_of(account))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for status, count in data["events"].items():
        click.echo(f"{status:<11} {count}")
    click.echo(f"{'total':<11} {data['total_events']}")
    click.echo(f"{'payments':<11} {data['payments']}")
    rate = data["success_rate"]
    click.echo(f"{'success':<11} {'-' if rate is None else f'{rate:.1%}'}")
    throughput = data["throughput"]
    click.echo(
        f"{'received':<11} {throughput['total']} in the last {hours} h "
        f"({throughput['per_minute']}/min)"
    )
    latency = data["latency"]
    click.echo(
        f"{'latency':<11} p50 {_seconds(latency['p50'])}, p95 {_seconds(latency['p95'])}, "
        f"p99 {_seconds(latency['p99'])} ({latency['sample']} success(es) in the window)"
    )
    queue = data["queue"]
    if queue["error"]:
        click.echo(f"{'queue':<11} unknown: {queue['error']}")
    else:
        click.echo(
            f"{'queue':<11} {queue['total']} ({queue['queued']} queued, "
            f"{'-' if queue['scheduled'] is None else queue['scheduled']} scheduled, "
            f"{queue['started']} running)"
        )
    oldest = data["oldest_pending"]
    click.echo(
        f"{'oldest':<11} "
        + (
            f"pending for {_seconds(oldest['age_seconds'])} (received {oldest['received_at']})"
            if oldest["received_at"]
            else "nothing pending"
        )
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _payment_line(event: WebhookEvent) -> str:
    payment = event.payment
    if payment is None:
        return "-"
    amount = f"{payment.amount} {payment.currency or ''}".strip() if payment.amount else "-"
    return f"{payment.mp_payment_id} {payment.status or '?'} {amount} {payment.payer_email or ''}"


@webhooks_cli.command("reconcile")
def reconcile_command() -> None:
    """Run one reconciler pass: expired leases, and due events missing from Redis."""
    from .reconciler import reconcile

    report = reconcile()
    click.echo(f"leases expired: {len(report.leases_expired)}, re-enqueued: {len(report.requeued)}")
    if report.redis_error:
        raise click.ClickException(f"Redis unavailable: {report.redis_error}")


@webhooks_cli.command("catch-up")
@click.option("--since", type=click.DateTime(), help="UTC start (default: the last run's cursor).")
@click.option("--account", help="Only this account (slug); default: every account with a token.")
def catch_up_command(since: datetime | None, account: str | None) -> None:
    """Ask MercadoPago for payments changed since --since and create events for missed ones,
    for each account with its own token and cursor."""
    from .catchup import catch_up_accounts

    reports = catch_up_accounts(account, since=since)
    if not reports:
        raise click.UsageError(
            f"no account with the slug {account!r}"
            if account
            else "catch-up skipped: no account has an MP access token"
        )
    for report in reports:
        click.echo(report.summary())
    if all(report.error or report.skipped_reason for report in reports):
        raise click.ClickException("catch-up did nothing: see each account above")


# pause/resume/status, the stored resources and simulate (their own modules).
from . import cli_processing, cli_resources, cli_simulate  # noqa: E402, F401
