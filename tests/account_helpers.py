"""A second account for the multi-account tests (issue 18), and what it receives.

The `app` fixture empties the event and resource tables but not `accounts`:
`second_account` deletes what it created when its test ends, so that no other test sees
a second account.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import text

from webhooks_app.accounts import Account
from webhooks_app.extensions import db
from webhooks_app.signatures import sign

from conftest import TABLES, notification

SECRET_B = "sec-b"


def add_account(slug: str, location: str | None = None, **fields: Any) -> Account:
    """An account with its own MercadoPago token and secret, GHL token and location."""
    account = Account(slug=slug, name=slug.title(), ghl_location_id=location, **fields)
    account.set_secret("mp_access_token", f"tok-{slug}")
    account.set_secret("mp_webhook_secret", SECRET_B if slug == "shop-b" else f"sec-{slug}")
    account.set_secret("ghl_api_token", f"ghl-{slug}")
    db.session.add(account)
    db.session.commit()
    return account


def drop_accounts() -> None:
    """Every row of every account, then every account but the default one."""
    db.session.remove()
    with db.engine.begin() as connection:
        for table in TABLES:
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("DELETE FROM accounts WHERE id <> 1"))


def second_account() -> Iterator[SimpleNamespace]:
    """A test files' `shop_b` fixture (`yield from second_account()`, after `app`): a second
    account, `shop-b`, on GoHighLevel location `loc-b`; its id and slug (the ORM object
    would not outlive the sessions the workers remove)."""
    drop_accounts()  # what a test that failed before its cleanup may have left
    try:
        account = add_account("shop-b", "loc-b")
        yield SimpleNamespace(id=account.id, slug=account.slug)
    finally:
        drop_accounts()


def post_for(client: FlaskClient, slug: str, payment_id: str | int, secret: str = SECRET_B) -> Any:
    """A signed payment notification to the account's own URL, as MercadoPago sends it."""
    request_id = str(uuid.uuid4())
    headers = {
        "x-request-id": request_id,
        "x-signature": sign(secret, str(payment_id), request_id),
    }
    return client.post(
        f"/webhooks/mp/{slug}?data.id={payment_id}&type=payment",
        json=notification(payment_id),
        headers=headers,
    )
