"""The work done for one event: MercadoPago payment -> `payments` row -> GHL contact tag.

Every step is idempotent, so an attempt that failed half-way can simply run
again: the payment upsert never lets an older read overwrite a newer one, the
GHL contact is upserted by e-mail, and adding a tag twice keeps one tag.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from flask import current_app
from redis import RedisError
from sqlalchemy import Row, bindparam, or_, select, update

from .config import parse_rate_limit
from .extensions import db
from .metrics import observe_api_call
from .models import EventStatus, Payment, WebhookEvent
from .pii import mask_payment
from .queueing import get_redis
from .ratelimit import SharedRateLimiter
from .services import GoHighLevelClient, MercadoPagoClient, RateLimitedError
from .sql import INSERTS, dialect_name, execute_alone, one_statement_transactions
from .timeutil import parse_iso, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _per_app(name: str, build: Callable[[], T]) -> T:
    """One `build()` per app and process, kept in `app.extensions` (clients keep connections)."""
    extensions = current_app.extensions
    if name not in extensions:
        extensions[name] = build()
    return extensions[name]


def mercadopago_client() -> MercadoPagoClient:
    """The app's MercadoPago client."""
    return _per_app("mercadopago_client", lambda: MercadoPagoClient.from_config(current_app.config))


def gohighlevel_client() -> GoHighLevelClient:
    """The app's GoHighLevel client."""
    return _per_app("gohighlevel_client", lambda: GoHighLevelClient.from_config(current_app.config))


def ghl_rate_limiter() -> SharedRateLimiter | None:
    """The shared GoHighLevel limiter (None when GHL_RATE_LIMIT is off)."""

    def build() -> SharedRateLimiter | None:
        limit = parse_rate_limit(current_app.config["GHL_RATE_LIMIT"])
        return SharedRateLimiter(get_redis(), "gohighlevel", *limit) if limit else None

    return _per_app("ghl_rate_limiter", build)


def _no_op() -> None:
    return None


_events = WebhookEvent.__table__
# Built once, like the upsert below; `updated_at` is set by the column's onupdate.
_LINK_PAYMENT = (
    update(_events)
    .where(_events.c.id == bindparam("event_id"))
    .values(payment_id=bindparam("new_payment_id"))
)


class ContactChange(NamedTuple):
    """New GoHighLevel fields of a payment, for the caller to write with `SET_CONTACT`."""

    payment_id: int
    contact_id: str
    tags: list[str]

    def params(self) -> dict[str, Any]:
        """`SET_CONTACT`'s bound values."""
        return {
            "contact_payment_id": self.payment_id,
            "new_contact_id": self.contact_id,
            "new_tags": self.tags,
        }


class PipelineResult(NamedTuple):
    """What an attempt that raised nothing leaves to record."""

    status: str  # EventStatus.SUCCESS or IGNORED
    contact: ContactChange | None = None


def run_pipeline(event: Row[Any], renew_lease: Callable[[], None] = _no_op) -> PipelineResult:
    """Process one event; return its final status and what to write with it. Raises on failure.

    `event` is the event's row as the attempt read it (id, type, resource_id,
    payment_id). `renew_lease` is called between steps (and while waiting for a
    GHL slot) so that a long attempt keeps its claim. The payment is committed
    before the GHL calls (no transaction stays open across them); what those
    calls change on it is returned, for the caller to write with the attempt's outcome.
    """
    if event.type != "payment":
        logger.info("event %s: type %r is not processed; ignored", event.id, event.type)
        return PipelineResult(EventStatus.IGNORED)
    with observe_api_call("mercadopago"):
        data = mercadopago_client().get_payment(event.resource_id)
    renew_lease()
    payment = store_payment(event, data)
    renew_lease()
    return PipelineResult(EventStatus.SUCCESS, sync_contact(payment, renew_lease))


def store_payment(event: Row[Any], data: dict[str, Any]) -> Row[Any]:
    """Upsert the payment and link the event to it, in one transaction; return the payment.

    On PostgreSQL both are one statement (`WITH upserted AS (INSERT …) UPDATE …`), run
    in autocommit; when our read loses to a newer stored row it returns nothing, and
    the stored row is read and linked below, as on SQLite.
    """
    if one_statement_transactions(db.session):
        values = _payment_values(data)
        payment = execute_alone(
            db.session, _upsert_and_link_statement(), {**values, "event_id": event.id}
        )
        if payment is not None:
            return payment
        # Our read is older than the stored row, which stays as it is.
        payment = db.session.execute(_READ_PAYMENT, values).one()
    else:
        payment = upsert_payment(data)
    if event.payment_id != payment.id:  # already linked (a retry): no UPDATE, as with the ORM
        db.session.execute(_LINK_PAYMENT, {"event_id": event.id, "new_payment_id": payment.id})
    db.session.commit()  # the payment and its link to the event, together
    return payment


def call_gohighlevel(call: Callable[[GoHighLevelClient], T], renew_lease: Callable[[], None]) -> T:
    """Make one GHL call within the shared rate limit; wait out a 429's Retry-After.

    Waiting is bounded by GHL_MAX_WAIT; past it the RateLimitedError (or
    RateLimitTimeout) propagates and the attempt is retried later.
    """
    client, limiter = gohighlevel_client(), ghl_rate_limiter()
    max_wait = current_app.config["GHL_MAX_WAIT"]
    deadline = time.monotonic() + max_wait
    while True:
        if limiter is not None:
            try:
                limiter.acquire(
                    client.location_id, max(0.0, deadline - time.monotonic()), renew_lease
                )
            except RedisError as exc:  # no Redis, no shared limit: GHL's 429 still guards
                logger.warning("GHL rate limiter unavailable: %s", exc)
        try:
            with observe_api_call("gohighlevel"):
                return call(client)
        except RateLimitedError as exc:
            pause = exc.retry_after or 1.0
            if limiter is not None:
                limiter.pause(pause)
            if time.monotonic() + pause > deadline:
                raise
            logger.info("GoHighLevel answered 429; waiting %.1fs", pause)
            renew_lease()
            time.sleep(pause)


# The columns an upsert writes (on insert also mp_payment_id and created_at).
PAYMENT_FIELDS = (
    "status",
    "status_detail",
    "amount",
    "currency",
    "payer_email",
    "external_reference",
    "mp_date_last_updated",
    "raw",
    "updated_at",
)

_payments = Payment.__table__
# What the rest of an attempt reads of the payment (RETURNING, or the stored row).
_PAYMENT_STATE = (
    _payments.c.id,
    _payments.c.mp_payment_id,
    _payments.c.status,
    _payments.c.payer_email,
    _payments.c.raw,
    _payments.c.ghl_contact_id,
    _payments.c.tags_applied,
)
_READ_PAYMENT = select(*_PAYMENT_STATE).where(
    _payments.c.mp_payment_id == bindparam("new_mp_payment_id")
)
# `updated_at` is set by the column's onupdate.
SET_CONTACT = (
    update(_payments)
    .where(_payments.c.id == bindparam("contact_payment_id"))
    .values(ghl_contact_id=bindparam("new_contact_id"), tags_applied=bindparam("new_tags"))
)


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """The payment upsert for `dialect`, built once: building it (the `excluded` alias,
    the coercions) cost more CPU than executing it. Values are bound at execution.

    A Core statement returning a row, not the ORM's `Payment`: the ORM's bulk-insert
    path and the flush of the GHL fields after it cost 1.5–3 ms of a worker's CPU per
    event (BENCHMARKS.md, Improvement 8)."""
    insert = INSERTS[dialect]
    # Bind names must differ from the column names (SQLAlchemy reserves those).
    names = ("mp_payment_id", "created_at", *PAYMENT_FIELDS)
    statement = insert(_payments).values({name: bindparam(f"new_{name}") for name in names})
    excluded = statement.excluded
    stored = _payments.c.mp_date_last_updated
    return statement.on_conflict_do_update(
        index_elements=[_payments.c.mp_payment_id],
        set_={name: excluded[name] for name in PAYMENT_FIELDS},
        # Never go back in time; a read without a date (or a row without one) is taken as is.
        where=or_(
            excluded.mp_date_last_updated.is_(None),
            stored.is_(None),
            stored <= excluded.mp_date_last_updated,
        ),
    ).returning(*_PAYMENT_STATE)


@functools.cache
def _upsert_and_link_statement() -> Any:
    """PostgreSQL: the payment upsert and the event's link to it, as one statement."""
    upserted = _upsert_statement("postgresql").cte("upserted")
    link = (
        update(_events)
        .where(_events.c.id == bindparam("event_id"))
        .where(_events.c.payment_id.is_distinct_from(upserted.c.id))
        # A column's onupdate is not applied inside a WITH: `updated_at` is set here.
        .values(payment_id=upserted.c.id, updated_at=bindparam("new_updated_at"))
        .cte("linked")
    )
    return select(*(upserted.c[column.name] for column in _PAYMENT_STATE)).add_cte(link)


def upsert_payment(data: dict[str, Any]) -> Row[Any]:
    """Insert or update the payment from MercadoPago's data; never go back in time.

    One `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING` statement: the unique
    constraint decides who creates the row when two workers race, and the WHERE keeps
    a row whose `mp_date_last_updated` is newer than ours (then nothing is returned and
    the stored row is read instead). Returns the payment's row as stored (the columns of
    `_PAYMENT_STATE`). Leaves the transaction open: the caller commits (with whatever
    else belongs to it).
    """
    values = _payment_values(data)
    statement = _upsert_statement(dialect_name(db.session))
    payment = db.session.execute(statement, values).one_or_none()
    if payment is not None:
        return payment
    # Our read is older than the stored row, which stays as it is.
    return db.session.execute(_READ_PAYMENT, values).one()


def _payment_values(data: dict[str, Any]) -> dict[str, Any]:
    """The upsert's bound values (`new_<column>`) for MercadoPago's payment data."""
    payer = data.get("payer") or {}
    now = utcnow()
    values = {
        "mp_payment_id": str(data["id"]),
        "created_at": now,
        "status": data.get("status"),
        "status_detail": data.get("status_detail"),
        "amount": _decimal(data.get("transaction_amount")),
        "currency": data.get("currency_id"),
        "payer_email": (payer.get("email") or None),
        "external_reference": data.get("external_reference"),
        "mp_date_last_updated": parse_iso(data.get("date_last_updated")),
        "raw": mask_payment(data),  # as is, or masked with PII_MASKING (webhooks_app/pii.py)
        "updated_at": now,
    }
    return {f"new_{name}": value for name, value in values.items()}


def sync_contact(
    payment: Row[Any], renew_lease: Callable[[], None] = _no_op
) -> ContactChange | None:
    """Upsert the payer as a GHL contact and tag them with the payment's current status.

    Returns the payment's new GHL fields (None if unchanged) without writing them: the
    caller records them with the attempt's success, in one transaction. `payment` is
    `upsert_payment`'s row.
    """
    if not payment.payer_email:
        logger.info("payment %s has no payer e-mail; GoHighLevel skipped", payment.mp_payment_id)
        return None
    raw = payment.raw or {}
    payer = raw.get("payer") or {}
    contact = call_gohighlevel(
        lambda client: client.upsert_contact(
            email=payment.payer_email,
            first_name=payer.get("first_name") or None,
            last_name=payer.get("last_name") or None,
        ),
        renew_lease,
    )
    contact_id = str(contact["id"])
    renew_lease()
    tags = list(payment.tags_applied or [])
    tag = current_app.config["GHL_STATUS_TAGS"].get(payment.status or "")
    if tag:
        call_gohighlevel(lambda client: client.add_tags(contact_id, [tag]), renew_lease)
        if tag not in tags:
            tags.append(tag)
    if (contact_id, tags) == (payment.ghl_contact_id, payment.tags_applied or []):
        return None
    return ContactChange(payment.id, contact_id, tags)


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
