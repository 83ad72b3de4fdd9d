"""`flask webhooks order <id>`, `chargebacks`, `alerts`, `subscriptions` and `subscription
<id>`: the other stored resources (one account's with `--account`)."""

from __future__ import annotations

import json

import click

from .cli import LIST_MAX, webhooks_cli
from .cli_accounts import ACCOUNT_OPTION, account_id_of, not_found
from .extensions import db
from .filters import FilterError
from .models import Subscription
from .resource_lookups import (
    ALERT_KINDS,
    find_alerts,
    find_chargebacks,
    find_merchant_order,
    find_subscription,
    order_payments,
    subscription_charges,
    subscriptions_query,
)
from .timeutil import isoformat


@webhooks_cli.command("order")
@click.argument("mp_order_id")
@ACCOUNT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the stored order as JSON.")
def order_command(mp_order_id: str, account: str | None, as_json: bool) -> None:
    """Show a stored merchant order and the stored payments it lists."""
    order = find_merchant_order(mp_order_id, account_id_of(account))
    if order is None:
        raise not_found(f"merchant order {mp_order_id}", account, "is not stored")
    payments = order_payments(order)
    if as_json:
        data = order.to_dict()
        data["payments"] = [payment.to_dict() for payment in payments]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"merchant order {order.mp_order_id}: {order.status} / {order.order_status}, "
        f"paid {order.paid_amount} of {order.total_amount} {order.currency or ''}".rstrip()
    )
    click.echo(f"external reference: {order.external_reference}")
    stored = {payment.mp_payment_id: payment for payment in payments}
    for payment_id in order.payment_ids or []:
        payment = stored.get(payment_id)
        state = f"{payment.status} {payment.payer_email}" if payment else "not stored yet"
        click.echo(f"  payment {payment_id}: {state}")


@webhooks_cli.command("chargebacks")
@ACCOUNT_OPTION
@click.option("--payment-id", help="Only the chargebacks of this MercadoPago payment.")
@click.option("--limit", default=50, show_default=True, help="Rows shown, newest first.")
def chargebacks_command(account: str | None, payment_id: str | None, limit: int) -> None:
    """List stored chargebacks, newest first."""
    chargebacks = find_chargebacks(
        payment_id=payment_id, limit=max(1, min(limit, 500)), account_id=account_id_of(account)
    )
    for cb in chargebacks:
        deadline = cb.date_documentation_deadline
        click.echo(
            f"{cb.mp_chargeback_id}  payment {cb.mp_payment_id}  {cb.amount} {cb.currency}  "
            f"documentation {cb.documentation_status}"
            + (f" (deadline {deadline:%Y-%m-%d})" if deadline else "")
        )
    click.echo(f"{len(chargebacks)} chargeback(s)")


@webhooks_cli.command("alerts")
@ACCOUNT_OPTION
@click.option("--kind", type=click.Choice(ALERT_KINDS), help="Only fraud alerts, or only claims.")
@click.option("--payment-id", help="Only those about this MercadoPago payment.")
@click.option("--limit", default=50, show_default=True, help="Rows shown, newest first.")
def alerts_command(
    account: str | None, kind: str | None, payment_id: str | None, limit: int
) -> None:
    """List stored fraud alerts and claims, newest first."""
    alerts = find_alerts(
        kind=kind,
        payment_id=payment_id,
        limit=max(1, min(limit, LIST_MAX)),
        account_id=account_id_of(account),
    )
    for alert in alerts:
        order = f"  merchant order {alert.merchant_order_id}" if alert.merchant_order_id else ""
        detail = f" ({alert.detail})" if alert.detail else ""
        click.echo(
            f"{isoformat(alert.created_at)}  {alert.kind:<11} {alert.mp_resource_id}  "
            f"payment {alert.mp_payment_id or '-'}{order}  payer {alert.payer_email or '-'}  "
            f"{alert.status or '-'}{detail}  alerted {isoformat(alert.alerted_at) or 'no'}"
        )
    click.echo(f"{len(alerts)} alert(s)")


@webhooks_cli.command("subscriptions")
@ACCOUNT_OPTION
@click.option("--status", help="Only this status, e.g. authorized.")
@click.option("--limit", default=50, show_default=True, help="Rows to show (newest first).")
def subscriptions_command(account: str | None, status: str | None, limit: int) -> None:
    """List subscriptions (MercadoPago preapprovals), most recently updated first."""
    try:
        query = subscriptions_query(status, account_id_of(account))
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None
    query = query.order_by(Subscription.updated_at.desc(), Subscription.id.desc())
    rows = db.session.scalars(query.limit(min(limit, LIST_MAX))).all()
    for row in rows:
        amount = f"{row.amount} {row.currency or ''}".strip() if row.amount is not None else "-"
        every = f"every {row.frequency} {row.frequency_type}" if row.frequency else ""
        click.echo(
            f"{row.mp_preapproval_id}  {row.status or '-':<10} {row.payer_email or '-':<30} "
            f"{amount} {every}  next {isoformat(row.next_payment_date) or '-'}  "
            f"{row.reason or ''}"
        )
    click.echo(f"{len(rows)} subscription(s)")


@webhooks_cli.command("subscription")
@click.argument("mp_preapproval_id")
@ACCOUNT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print it and its charges as JSON.")
def subscription_command(mp_preapproval_id: str, account: str | None, as_json: bool) -> None:
    """Show a stored subscription and its charges (authorized payments), latest first."""
    row = find_subscription(mp_preapproval_id, account_id_of(account))
    if row is None:
        raise not_found(f"subscription {mp_preapproval_id}", account, "is not stored")
    charges = subscription_charges(row)
    if as_json:
        data = row.to_dict()
        data["authorized_payments"] = [charge.to_dict() for charge in charges]
        click.echo(json.dumps(data, indent=2))
        return
    amount = f"{row.amount} {row.currency or ''}".strip() if row.amount is not None else "-"
    every = f" every {row.frequency} {row.frequency_type}" if row.frequency else ""
    click.echo(f"subscription {row.mp_preapproval_id}: {row.status or '-'}, {amount}{every}")
    click.echo(f"payer: {row.payer_email or '-'}  plan: {row.preapproval_plan_id or '-'}")
    click.echo(f"reason: {row.reason or '-'}  next payment: {isoformat(row.next_payment_date)}")
    tags = ", ".join(row.tags_applied or []) or "-"
    click.echo(f"GHL contact: {row.ghl_contact_id or '-'}  tags: {tags}")
    for charge in charges:
        payment = (
            f"payment {charge.mp_payment_id}: {charge.payment_status or '?'}"
            if charge.mp_payment_id
            else "no payment yet"
        )
        click.echo(
            f"  charge {charge.mp_authorized_payment_id}: {charge.status or '?'}, debit "
            f"{isoformat(charge.debit_date) or '-'}, {charge.amount} {charge.currency or ''}, "
            f"retry {charge.retry_attempt if charge.retry_attempt is not None else '-'}, {payment}"
        )
    click.echo(f"{len(charges)} charge(s)")
