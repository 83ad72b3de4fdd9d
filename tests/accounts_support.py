"""Accounts for tests: create them with their secrets, sign their notifications, remove them.

The `app` fixture empties the event and resource tables but keeps `accounts` (the default
account comes from the migration): tests that add accounts remove them with
`remove_accounts()` before and after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from webhooks_app import accounts
from webhooks_app.accounts import Account
from webhooks_app.extensions import db
from webhooks_app.signatures import sign

from conftest import TABLES, notification


@dataclass(frozen=True)
class Tenant:
    """One account's credentials, as the test knows them in clear."""

    id: int
    slug: str
    mp_token: str
    secret: str
    location: str
    ghl_token: str


def create_account(
    slug: str,
    *,
    enabled: bool = True,
    with_secrets: bool = True,
    location: str | None = None,
    **fields: Any,
) -> Tenant:
    """A committed account with its own MercadoPago token and webhook secret and its own
    GoHighLevel location and token (unless `with_secrets=False`); `fields` are other columns
    (status_tags, tag_mode …)."""
    tenant = Tenant(
        id=0,
        slug=slug,
        mp_token=f"mp-token-{slug}",
        secret=f"webhook-secret-{slug}",
        location=location or f"location-{slug}",
        ghl_token=f"ghl-token-{slug}",
    )
    account = Account(slug=slug, name=f"Account {slug}", enabled=enabled, **fields)
    if with_secrets:
        account.set_secret("mp_access_token", tenant.mp_token)
        account.set_secret("mp_webhook_secret", tenant.secret)
        account.set_secret("ghl_api_token", tenant.ghl_token)
        account.ghl_location_id = tenant.location
    db.session.add(account)
    db.session.commit()
    accounts.forget_cached()
    return replace(tenant, id=account.id)


def remove_accounts() -> None:
    """Delete every account but the default one (their events and resources first)."""
    db.session.remove()
    with db.engine.begin() as connection:
        for table in TABLES:
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("DELETE FROM accounts WHERE id <> 1"))
    accounts.forget_cached()


def signed(
    resource_id: str | int,
    secret: str | None,
    *,
    notification_id: int | None = None,
    event_type: str = "payment",
    request_id: str | None = None,
) -> dict[str, Any]:
    """The query, body and headers of a Webhooks-form notification signed with `secret`,
    as keyword arguments for a test client's or `requests`' post."""
    resource_id, request_id = str(resource_id), request_id or str(uuid.uuid4())
    body = {
        **notification(resource_id, notification_id=notification_id),
        "type": event_type,
        "action": f"{event_type}.updated",
    }
    headers = {"x-request-id": request_id}
    if secret:
        headers["x-signature"] = sign(secret, resource_id, request_id)
    return {
        "query_string": {"data.id": resource_id, "type": event_type},
        "json": body,
        "headers": headers,
    }


def post_to(client: Any, slug: str, resource_id: str | int, secret: str | None, **kwargs: Any):
    """POST a signed notification to the account's URL with Flask's test client."""
    return client.post(f"/webhooks/mp/{slug}", **signed(resource_id, secret, **kwargs))


def second_account() -> Iterator[SimpleNamespace]:
    """A test file's `shop_b` fixture (`yield from second_account()`, after `app`): account
    `shop-b` on GoHighLevel location `loc-b`, removed afterwards; its id, slug and secret (an
    ORM object would not outlive the sessions the workers remove)."""
    tenant = create_account("shop-b", location="loc-b")
    try:
        yield SimpleNamespace(id=tenant.id, slug=tenant.slug, secret=tenant.secret)
    finally:
        remove_accounts()


def post_for(client: Any, slug: str, payment_id: str | int, secret: str | None = None) -> Any:
    """A payment notification to the account's URL, signed with its secret (as
    `create_account` made it) unless another is given."""
    return post_to(client, slug, payment_id, secret or f"webhook-secret-{slug}")
