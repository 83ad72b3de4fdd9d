"""`flask webhooks …`: the operator's commands."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import click
import requests
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from .extensions import db
from .models import EventStatus, WebhookEvent
from .processing import ReplayRefused, due_events, process_event, replay_event
from .signatures import sign
from .stats import summary

webhooks_cli = AppGroup("webhooks", help="Process, replay, inspect and simulate webhook events.")

PAYMENT_STATUSES = ("approved", "pending", "in_process", "rejected", "cancelled", "refunded")


def init_app(app: Flask) -> None:
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


@webhooks_cli.command("replay")
@click.argument("event_ids", nargs=-1, type=int)
@click.option(
    "--status",
    "status",
    type=click.Choice([EventStatus.FAILED, EventStatus.IGNORED]),
    help="Replay every event with this status.",
)
@click.option("--force", is_flag=True, help="Also replay events that already succeeded.")
def replay_command(event_ids: tuple[int, ...], status: str | None, force: bool) -> None:
    """Re-queue events by id, or every event with --status (e.g. failed)."""
    if not event_ids and not status:
        raise click.UsageError("give event ids, or --status failed")
    query = select(WebhookEvent).order_by(WebhookEvent.id)
    query = (
        query.where(WebhookEvent.status == status)
        if status
        else query.where(WebhookEvent.id.in_(event_ids))
    )
    events = list(db.session.scalars(query))
    missing = sorted(set(event_ids) - {event.id for event in events})
    errors = [f"event {event_id} does not exist" for event_id in missing]
    replayed = 0
    for event in events:
        try:
            queued = replay_event(event, force=force)
        except ReplayRefused as exc:
            errors.append(str(exc))
            continue
        replayed += 1
        click.echo(
            f"event {event.id}: re-queued" + ("" if queued else " (Redis down: left pending)")
        )
    click.echo(f"replayed {replayed} event(s)")
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        raise SystemExit(1)


@webhooks_cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats_command(as_json: bool) -> None:
    """Counts of events by status."""
    data = summary()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for status, count in data["events"].items():  # type: ignore[union-attr]
        click.echo(f"{status:<11} {count}")
    click.echo(f"{'total':<11} {data['total_events']}")
    click.echo(f"{'payments':<11} {data['payments']}")
    rate = data["success_rate"]
    click.echo(f"{'success':<11} {'-' if rate is None else f'{rate:.1%}'}")


@webhooks_cli.command("simulate")
@click.option(
    "--url",
    default="http://127.0.0.1:5000/webhooks/mp",
    show_default=True,
    help="The running service's webhook endpoint.",
)
@click.option("--count", default=3, show_default=True, help="Notifications to send.")
@click.option(
    "--status",
    "payment_status",
    type=click.Choice(PAYMENT_STATUSES),
    default="approved",
    show_default=True,
    help="Status of the sandbox payments created.",
)
@click.option(
    "--payment-id",
    "payment_ids",
    multiple=True,
    help="Notify about this existing payment instead of creating sandbox payments.",
)
@click.option("--ipn", is_flag=True, help="Send the legacy IPN form instead of a signed Webhook.")
def simulate_command(
    url: str, count: int, payment_status: str, payment_ids: tuple[str, ...], ipn: bool
) -> None:
    """Send signed sample notifications to a running instance, as MercadoPago would."""
    config = current_app.config
    ids = list(payment_ids) or [_create_sandbox_payment(payment_status) for _ in range(count)]
    failures = 0
    for payment_id in ids:
        response = _send_notification(url, payment_id, config.get("MP_WEBHOOK_SECRET"), ipn)
        click.echo(f"payment {payment_id}: HTTP {response.status_code} {response.text.strip()}")
        failures += response.status_code != 200
    if failures:
        raise SystemExit(1)


def _create_sandbox_payment(status: str) -> str:
    base_url = current_app.config["MP_API_BASE_URL"].rstrip("/")
    if "mercadopago.com" in base_url:
        raise click.UsageError(
            "MP_API_BASE_URL is the real API: pass --payment-id for real payments"
        )
    try:
        response = requests.post(
            f"{base_url}/_sandbox/payments", json={"status": status}, timeout=5
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise click.ClickException(
            f"could not create a sandbox payment at {base_url}: {exc}"
        ) from None
    return str(response.json()["id"])


def _send_notification(
    url: str, payment_id: str, secret: str | None, ipn: bool
) -> requests.Response:
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    try:
        if ipn:
            return requests.post(
                url, params={"topic": "payment", "id": payment_id}, headers=headers, timeout=10
            )
        body = {
            "id": uuid.uuid4().int % 10**12,
            "live_mode": False,
            "type": "payment",
            "date_created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "api_version": "v1",
            "action": "payment.updated",
            "data": {"id": payment_id},
        }
        if secret:
            headers["x-signature"] = sign(secret, payment_id, request_id)
        return requests.post(
            url,
            params={"data.id": payment_id, "type": "payment"},
            json=body,
            headers=headers,
            timeout=10,
        )
    except requests.RequestException as exc:
        raise click.ClickException(f"could not reach {url}: {exc}") from None


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
def catch_up_command(since: datetime | None) -> None:
    """Ask MercadoPago for payments changed since --since and create events for missed ones."""
    from .catchup import catch_up

    report = catch_up(since=since)
    if report.skipped_reason:
        raise click.ClickException(f"catch-up skipped: {report.skipped_reason}")
    click.echo(
        f"scanned {report.scanned} payment(s) since {report.since:%Y-%m-%d %H:%M:%S}, "
        f"created {len(report.created)} event(s)"
    )
