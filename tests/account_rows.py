"""Two accounts with rows of every kind, for the tests that one account's token, `--account`
or narrowing never reaches the other's (test_api_accounts, test_cli_accounts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from accounts_support import post_to
from factories import add_event, add_payment
from flask.testing import FlaskClient

from webhooks_app import account_ops
from webhooks_app.accounts import Account
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, MpAlert, Subscription
from webhooks_app.resources import Chargeback, MerchantOrder, MerchantOrderPayment
from webhooks_app.timeutil import utcnow

# Every secret the tests give an account: none may ever be printed or answered.
SECRET_MARK = "s3cr3t"


def secrets_of(slug: str) -> dict[str, str]:
    return {
        "mp_access_token": f"APP_USR-{slug}-{SECRET_MARK}-mp",
        "mp_webhook_secret": f"{slug}-{SECRET_MARK}-webhook",
        "ghl_api_token": f"pit-{slug}-{SECRET_MARK}-ghl",
    }


def make_account(slug: str, **values: Any) -> Account:
    return account_ops.create_account(
        slug,
        f"{slug.title()} Ltd",
        ghl_location_id=f"loc-{slug}",
        **{**secrets_of(slug), **values},
    )


@dataclass
class Seeded:
    """One account's rows: ids of its events, the MercadoPago ids of the rest."""

    account: Account
    slug: str
    events: dict[str, int] = field(default_factory=dict)


# The same MercadoPago ids in both accounts: unique per account, so a lookup must scope.
SHARED_IDS = {"payment": "555", "order": "777", "chargeback": "888", "subscription": "pre-1"}


def seed(account: Account, only: str | None = None) -> Seeded:
    """A failed, a success and a pending event, a payment, an order, a chargeback, a
    subscription and a fraud alert; `only` ids (order …) are of this account alone."""
    seeded = Seeded(account, account.slug)
    account_id = account.id
    suffix = f"-{only}" if only else ""
    payment = add_payment(
        SHARED_IDS["payment"] + suffix,
        account_id=account_id,
        payer_email=f"buyer@{account.slug}.example",
    )
    for status in (EventStatus.FAILED, EventStatus.SUCCESS, EventStatus.PENDING):
        event = add_event(
            status=status, account_id=account_id, payment_id=payment.id, resource_id="555"
        )
        seeded.events[status] = event.id
    now = utcnow()
    order = MerchantOrder(
        account_id=account_id,
        mp_order_id=SHARED_IDS["order"] + suffix,
        status="closed",
        payment_ids=[payment.mp_payment_id],
        raw={},
    )
    db.session.add(order)
    db.session.flush()
    db.session.add_all(
        [
            MerchantOrderPayment(merchant_order_id=order.id, mp_payment_id=payment.mp_payment_id),
            Chargeback(
                account_id=account_id,
                mp_chargeback_id=SHARED_IDS["chargeback"] + suffix,
                mp_payment_id="555",
                payment_ids=["555"],
                amount=Decimal("10.00"),
                documentation_status="pending",
                raw={},
            ),
            Subscription(
                account_id=account_id,
                mp_preapproval_id=SHARED_IDS["subscription"] + suffix,
                status="authorized",
                payer_email=f"sub@{account.slug}.example",
                raw={},
            ),
            MpAlert(
                account_id=account_id,
                kind=MpAlert.FRAUD_ALERT,
                mp_resource_id="555" + suffix,
                mp_payment_id="555",
                status="stop_delivery",
                raw={},
                alerted_at=now,
            ),
        ]
    )
    db.session.commit()
    return seeded


def post_to_account(client: FlaskClient, slug: str, resource_id: str, event_type: str = "payment"):
    """A notification to `/webhooks/mp/<slug>`, signed with that account's webhook secret."""
    secret = secrets_of(slug)["mp_webhook_secret"]
    return post_to(client, slug, resource_id, secret, event_type=event_type)
