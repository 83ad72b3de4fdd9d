"""Where the payer's personal data is stored: one entry per table, read by erasure and retention.

Each `PersonalTable` says which columns an erasure empties, which column holds
MercadoPago's own copy of the resource (`raw`) and which of its top-level fields
are kept (ids, statuses, amounts, dates: the financial facts and what the service
reads), how the table's rows are tied to the events that wrote them (retention
reduces a row's copy with the purge of such an event) and to a payer (erasure).
A new table holding payer data is one more entry in `PERSONAL_TABLES`, e.g. a table
holding only the payer's MercadoPago user id:
`PersonalTable(SomeCharge.__table__, "charge", payer_ids=("payer_id",), raw=None)`: erasure
then empties `payer_id` in the rows whose id is one the payer's payments or subscriptions
name (ids are compared as text). `authorized_payments` needs no entry: its handler leaves
MercadoPago's `payer_id`, the charge's one personal datum, out of the stored copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from .handlers.chargeback import ChargebackHandler
from .handlers.merchant_order import MerchantOrderHandler
from .handlers.risk import ClaimHandler, FraudAlertHandler
from .handlers.subscription import SubscriptionHandler
from .models import MpAlert, Payment, Subscription
from .pii import KEPT_PAYMENT_FIELDS
from .resources import Chargeback, MerchantOrder


@dataclass(frozen=True)
class EventLink:
    """Events that wrote a row: `events.<event_column> = <table>.<column>`, for events of
    `topics` (any type when empty)."""

    event_column: str
    column: str
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class PersonalTable:
    """A table whose rows carry a payer's personal data."""

    table: Table
    label: str  # what a report calls its rows ("payment", "subscription" …)
    emails: tuple[str, ...] = ()  # the payer's address: erasure finds rows by it, empties it
    payer_ids: tuple[str, ...] = ()  # the payer's MercadoPago user id: found by, emptied
    raw: str | None = "raw"  # MercadoPago's copy, reduced to `kept`
    kept: tuple[str, ...] = ()
    # Where the copy names the payer's MercadoPago user id (collected before reducing it,
    # so that tables holding only that id are erased too).
    raw_payer_id: tuple[str, ...] = ()
    payment_ids: tuple[str, ...] = ()  # columns holding one MercadoPago payment id
    payment_id_lists: tuple[str, ...] = ()  # columns holding a JSON list of them
    event_link: EventLink | None = None

    @property
    def name(self) -> str:
        return self.table.name

    def column(self, name: str) -> Any:
        return self.table.c[name]


# MercadoPago's preapproval (GET /preapproval/{id}) without payer_id, payer_email, card_id
# and the checkout URLs.
KEPT_SUBSCRIPTION_FIELDS = (
    "id", "status", "reason", "external_reference", "preapproval_plan_id", "auto_recurring",
    "summarized", "next_payment_date", "date_created", "last_modified", "payment_method_id",
    "collector_id", "application_id",
)  # fmt: skip
# The merchant order (GET /merchant_orders/{id}) without payer, shipments (the receiver's
# address), items and additional_info. Its `payments` are summaries without payer data.
KEPT_MERCHANT_ORDER_FIELDS = (
    "id", "status", "order_status", "external_reference", "preference_id", "payments",
    "total_amount", "paid_amount", "refunded_amount", "shipping_cost", "cancelled",
    "date_created", "last_updated", "site_id",
)  # fmt: skip
# The chargeback (GET /v1/chargebacks/{id}) without its documentation (uploaded files).
KEPT_CHARGEBACK_FIELDS = (
    "id", "payments", "amount", "currency", "coverage_applied", "coverage_elegible",
    "documentation_required", "documentation_status", "date_documentation_deadline",
    "date_created", "date_last_updated", "live_mode",
)  # fmt: skip
# A fraud alert's copy is its notification; a claim's is GET /post-purchase/v1/claims/{id}
# without `players` (the buyer's user id) and `labels`.
KEPT_ALERT_FIELDS = (
    "id", "type", "action", "data", "api_version", "live_mode", "resource", "resource_id",
    "status", "stage", "parent_id", "reason_id", "fulfilled", "quantity_type", "resolution",
    "site_id", "date_created", "last_updated",
)  # fmt: skip

# In erasure order: the payments and subscriptions first, whose copies name the payer's
# MercadoPago user id and payments, which the later entries are found by.
PERSONAL_TABLES: tuple[PersonalTable, ...] = (
    PersonalTable(
        Payment.__table__,
        "payment",
        emails=("payer_email",),
        kept=KEPT_PAYMENT_FIELDS,
        raw_payer_id=("payer", "id"),
        payment_ids=("mp_payment_id",),
        event_link=EventLink("payment_id", "id"),
    ),
    PersonalTable(
        Subscription.__table__,
        "subscription",
        emails=("payer_email",),
        kept=KEPT_SUBSCRIPTION_FIELDS,
        raw_payer_id=("payer_id",),
        event_link=EventLink("resource_id", "mp_preapproval_id", SubscriptionHandler.topics),
    ),
    PersonalTable(
        MpAlert.__table__,
        "alert",  # fraud alerts and claims
        emails=("payer_email",),
        kept=KEPT_ALERT_FIELDS,
        payment_ids=("mp_payment_id",),
        event_link=EventLink(
            "resource_id", "mp_resource_id", FraudAlertHandler.topics + ClaimHandler.topics
        ),
    ),
    PersonalTable(
        MerchantOrder.__table__,
        "merchant order",
        kept=KEPT_MERCHANT_ORDER_FIELDS,
        raw_payer_id=("payer", "id"),
        payment_id_lists=("payment_ids",),
        event_link=EventLink("resource_id", "mp_order_id", MerchantOrderHandler.topics),
    ),
    PersonalTable(
        Chargeback.__table__,
        "chargeback",
        kept=KEPT_CHARGEBACK_FIELDS,
        payment_ids=("mp_payment_id",),
        payment_id_lists=("payment_ids",),
        event_link=EventLink("resource_id", "mp_chargeback_id", ChargebackHandler.topics),
    ),
)
PAYMENTS = PERSONAL_TABLES[0]


def raw_payer_id(raw: Any, path: tuple[str, ...]) -> str | None:
    """The payer's MercadoPago user id at `path` in a stored copy, as text."""
    value = raw
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return None if value is None or isinstance(value, dict | list) else str(value)
