"""`flask webhooks simulate`: signed sample notifications, as MercadoPago sends them."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click
import requests
from flask import current_app

from . import accounts
from .cli import webhooks_cli
from .signatures import parse_secrets, sign

PAYMENT_STATUSES = ("approved", "pending", "in_process", "rejected", "cancelled", "refunded")
# `simulate --test`'s payment ids: far above any the sandbox hands out.
TEST_PAYMENT_ID_BASE = 990_000_000_000

# The Webhooks form's type per topic (newer integrations: `topic_*_wh`; the IPN form's
# topic is the short name). MercadoPago developers, "Notifications" / "Chargebacks".
WEBHOOK_TYPES = {
    "payment": "payment",
    "merchant_order": "topic_merchant_order_wh",
    "chargebacks": "topic_chargebacks_wh",
    "subscription_preapproval": "subscription_preapproval",
    "subscription_authorized_payment": "subscription_authorized_payment",
    "stop_delivery_op_wh": "stop_delivery_op_wh",
    "topic_claims_integration_wh": "topic_claims_integration_wh",
}
# `simulate --type`: the topics whose resource the sandbox can create.
SIMULATED_TOPICS = tuple(WEBHOOK_TYPES)


DEFAULT_URL = "http://127.0.0.1:5000/webhooks/mp"


@webhooks_cli.command("simulate")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="The running service's webhook endpoint (with --account: its slug is appended).",
)
@click.option(
    "--account",
    metavar="SLUG",
    help="Send to this account's URL, signed with its webhook secret; its sandbox resources "
    "belong to its MercadoPago token.",
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
@click.option(
    "--test",
    "test_notification",
    is_flag=True,
    help='Send one test notification as the panel\'s "Simular" does: live_mode false, about '
    "a payment nobody can read (the service ignores it).",
)
@click.option(
    "--type",
    "topic",
    type=click.Choice(SIMULATED_TOPICS),
    default="payment",
    show_default=True,
    help="The topic: its resource is created in the sandbox (a merchant order or a "
    "chargeback of a new payment, a subscription, a claim …); a fraud alert is sent as "
    "MercadoPago documents it (no data.id, signed without it).",
)
def simulate_command(
    url: str,
    count: int,
    payment_status: str,
    payment_ids: tuple[str, ...],
    ipn: bool,
    test_notification: bool,
    topic: str,
    account: str | None,
) -> None:
    """Send signed sample notifications to a running instance, as MercadoPago would.

    With --type merchant_order or chargebacks, --payment-id names that resource's ids."""
    config: Mapping[str, Any] = current_app.config
    owner = None
    if account is not None:
        settings = accounts.by_slug(account)
        if settings is None:
            raise click.UsageError(f"no account has the slug {account!r}")
        config, owner = settings.config, _registered_seller(settings.config.get("MP_ACCESS_TOKEN"))
        url = f"{url.rstrip('/')}/{settings.slug}" if url == DEFAULT_URL else url
    if test_notification:
        if ipn or payment_ids or topic != "payment":
            raise click.UsageError("--test sends one Webhooks-form payment notification of its own")
        # MercadoPago's simulated notifications name an id its API answers 404 for.
        ids = [str(TEST_PAYMENT_ID_BASE + secrets.randbelow(10**9))]
    else:
        ids = list(payment_ids) or [
            _create_sandbox_resource(topic, payment_status, owner) for _ in range(count)
        ]
    failures = 0
    for payment_id in ids:
        response = _send_notification(
            url,
            payment_id,
            config.get("MP_WEBHOOK_SECRET"),
            ipn,
            topic,
            live_mode=not test_notification,
            merchant_order=_sandbox_order_of(
                payment_id, topic, ipn or bool(payment_ids), owner
            ),
        )
        click.echo(f"{topic} {payment_id}: HTTP {response.status_code} {response.text.strip()}")
        failures += response.status_code != 200
    if failures:
        raise SystemExit(1)


def _create_sandbox_resource(topic: str, payment_status: str, owner: str | None) -> str:
    """Create the notification's resource in the sandbox (the seller `owner`'s, if given);
    return the id it is notified by."""

    def post(what: str, body: dict[str, Any]) -> str:
        return _sandbox_post(what, {**body, "owner": owner} if owner else body)

    if topic == "subscription_preapproval":
        return post("preapprovals", {"status": "authorized"})
    if topic == "subscription_authorized_payment":  # a charge of a new subscription
        preapproval_id = post("preapprovals", {"status": "authorized"})
        charge = {"preapproval_id": preapproval_id, "payment_status": payment_status}
        return post("authorized-payments", charge)
    payment_id = post("payments", {"status": payment_status})
    if topic == "merchant_order":
        return post("merchant-orders", {"payment_ids": [payment_id]})
    if topic == "chargebacks":
        return post("chargebacks", {"payment_id": payment_id})
    if topic == "topic_claims_integration_wh":
        return post("claims", {"resource_id": payment_id})
    return payment_id  # a payment, or a fraud alert about it


def _sandbox_order_of(payment_id: str, topic: str, skip: bool, owner: str | None) -> str | None:
    """A fraud alert names its payment's merchant order: one is created in the sandbox
    (not for --payment-id, whose payments may be real, nor for IPN, which names none)."""
    if topic != "stop_delivery_op_wh" or skip:
        return None
    body: dict[str, Any] = {"payment_ids": [payment_id]}
    return _sandbox_post("merchant-orders", {**body, "owner": owner} if owner else body)


def _registered_seller(token: str | None) -> str | None:
    """The account's token if the sandbox plays it as a seller (its resources are then that
    seller's: README, "Many tenants"); None when no seller is registered (all is visible)."""
    base_url = current_app.config["MP_API_BASE_URL"].rstrip("/")
    try:
        registered = requests.get(f"{base_url}/_sandbox/tenants", timeout=5).json()
    except (requests.RequestException, ValueError):
        return None
    return token if token in registered.get("mercadopago", []) else None


def _sandbox_post(what: str, body: dict[str, Any]) -> str:
    base_url = current_app.config["MP_API_BASE_URL"].rstrip("/")
    if "mercadopago.com" in base_url:
        raise click.UsageError(
            "MP_API_BASE_URL is the real API: pass --payment-id for real payments"
        )
    try:
        response = requests.post(f"{base_url}/_sandbox/{what}", json=body, timeout=5)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise click.ClickException(
            f"could not create a sandbox resource ({what}) at {base_url}: {exc}"
        ) from None
    return str(response.json()["id"])


def _send_notification(
    url: str,
    payment_id: str,
    secret: str | None,
    ipn: bool,
    topic: str = "payment",
    *,
    live_mode: bool = True,
    merchant_order: str | None = None,
) -> requests.Response:
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    try:
        if ipn:
            return requests.post(
                url, params={"topic": topic, "id": payment_id}, headers=headers, timeout=10
            )
        body, params = _webhook_body(topic, payment_id, live_mode, merchant_order)
        signing = parse_secrets(secret)
        if signing:  # while rotating, the newest (the first) signs, as MercadoPago does
            # No ?data.id (a fraud alert): the id part is left out of what is signed.
            headers["x-signature"] = sign(signing[0], params.get("data.id"), request_id)
        return requests.post(url, params=params, json=body, headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"could not reach {url}: {exc}") from None


def _webhook_body(
    topic: str, resource_id: str, live_mode: bool, merchant_order: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and query string MercadoPago sends for this topic (mercadopago/devsite-docs,
    guides/additional-content/your-integrations/notification-additional-info)."""
    event_type = WEBHOOK_TYPES[topic]
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    if topic == "stop_delivery_op_wh":
        # "Fraud alerts": no data.id; the payment and its order are named in `data`.
        data: dict[str, Any] = {
            "description": "simulated fraud alert",
            "payment_id": _number(resource_id),
            "site_id": "MLA",
        }
        if merchant_order:
            data["merchant_order"] = _number(merchant_order)
        body = {
            "action": "Created",
            "api_version": "v1",
            "data": data,
            "date_created": now,
            "id": resource_id,
            "live_mode": live_mode,
            "type": event_type,
            "user_id": 224403329,
            "version": 1,
        }
        return body, {"type": event_type}
    data = {"id": resource_id}
    if topic == "topic_claims_integration_wh":
        # "Claims": data.id is the claim, data.resource the path to read it at.
        data["resource"] = f"/post-purchase/v1/claims/{resource_id}"
    body = {
        "id": uuid.uuid4().int % 10**12,
        "live_mode": live_mode,
        "type": event_type,
        "date_created": now,
        "api_version": "v1",
        "action": f"{topic}.updated" if topic != "payment" else "payment.updated",
        "data": data,
    }
    return body, {"data.id": resource_id, "type": event_type}


def _number(value: str) -> int | str:
    """MercadoPago sends these ids as JSON numbers."""
    return int(value) if value.isdigit() else value
