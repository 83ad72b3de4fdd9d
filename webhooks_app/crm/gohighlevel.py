"""GoHighLevel as the CRM: upsert the payer as a contact, tag them with the payment's status.

Every step is idempotent: the contact is upserted by e-mail (with GHL_CUSTOM_FIELDS),
adding a tag twice keeps one tag and removing an absent one is no error. With
GHL_TAG_MODE=replace the tag of a payment's previous status is removed unless another
payment of the contact still has that status (`crm.tags`). Calls share one rate limit
across workers (GHL_RATE_LIMIT).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import current_app
from redis import RedisError
from redis.exceptions import LockError
from sqlalchemy import Row, bindparam, select

from ..accounts import account_config, current_account_id
from ..busy import ResourceBusy
from ..clients import ghl_rate_limiter, gohighlevel_client
from ..extensions import db
from ..metrics import observe_api_call
from ..models import Payment
from ..queueing import get_redis
from ..services import GoHighLevelClient, RateLimitedError
from ..sql import fetch_all_alone
from ..timeutil import isoformat
from .base import ContactChange, no_op
from .tags import effective_status, plan_tags

logger = logging.getLogger(__name__)

T = TypeVar("T")

STAGE = "gohighlevel"
# How long a sync waits for another worker's sync of the same contact.
CONTACT_LOCK_WAIT = 5.0


class GoHighLevelCRM:
    """The `CRM` interface over `sync_contact`."""

    stage = STAGE

    def sync(
        self, payment: Row[Any], renew_lease: Callable[[], None] = no_op
    ) -> ContactChange | None:
        return sync_contact(payment, renew_lease)

    def tag(
        self,
        email: str,
        add: list[str] | tuple[str, ...] = (),
        remove: list[str] | tuple[str, ...] = (),
        renew_lease: Callable[[], None] = no_op,
    ) -> str:
        return tag_contact(email, add, remove, renew_lease)


GOHIGHLEVEL = GoHighLevelCRM()


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
                # GoHighLevel's own X-RateLimit-* of the last answer (this account's client:
                # its location's count): wait when none is left, this location only.
                limiter.observe(client.last_rate_limit, client.location_id)
                limiter.acquire(
                    client.location_id, max(0.0, deadline - time.monotonic()), renew_lease
                )
            except RedisError as exc:  # no Redis, no shared limit: GHL's 429 still guards
                logger.warning("GHL rate limiter unavailable: %s", exc)
        try:
            with observe_api_call(STAGE):
                return call(client)
        except RateLimitedError as exc:
            pause = exc.retry_after or 1.0
            if limiter is not None:  # GoHighLevel's limits are per location
                limiter.pause(pause, client.location_id)
            if time.monotonic() + pause > deadline:
                raise
            logger.info("GoHighLevel answered 429; waiting %.1fs", pause)
            renew_lease()
            time.sleep(pause)


def status_tag(status: str | None) -> str | None:
    """The tag for a payment status (the account's GHL_STATUS_TAGS), if it has one."""
    return account_config()["GHL_STATUS_TAGS"].get(status or "")


_payments = Payment.__table__
# The contact's payments, this one included, as stored: GHL matches contacts by e-mail.
# (Equality, for the payer_email index: an e-mail spelt in another case by MercadoPago
# counts as another contact's here; GoHighLevel would match it.)
_CONTACT_PAYMENTS = select(
    _payments.c.id,
    _payments.c.status,
    _payments.c.status_detail,
    _payments.c.raw,
    _payments.c.tags_applied,
    _payments.c.mp_date_last_updated,
    _payments.c.crm_synced_at,
    _payments.c.mp_payment_id,
    _payments.c.amount,
    _payments.c.currency,
    _payments.c.external_reference,
    _payments.c.ghl_contact_id,
).where(
    # The account's own: another account's payments are another merchant's business.
    _payments.c.account_id == bindparam("account_id"),
    _payments.c.payer_email == bindparam("email"),
)


def sync_contact(
    payment: Row[Any], renew_lease: Callable[[], None] = no_op
) -> ContactChange | None:
    """Upsert the payer as a GHL contact and give it the tag of the payment's current status.

    Returns the payment's new GHL fields (None if unchanged) without writing them: the
    caller records them with the attempt's success, in one transaction. Runs under the
    contact's lock (`contact_lock`), on the payment's state read again under it: two
    payments of one contact never decide on its tags at once, and an older read never
    reaches the CRM (the stored payment only moves forward).
    """
    if not payment.payer_email:
        logger.info("payment %s has no payer e-mail; GoHighLevel skipped", payment.mp_payment_id)
        return None
    with contact_lock(payment.payer_email) as extend:

        def renew() -> None:
            renew_lease()
            extend()

        return _sync_locked(payment, renew)


def _sync_locked(payment: Row[Any], renew_lease: Callable[[], None]) -> ContactChange | None:
    rows = fetch_all_alone(
        db.session,
        _CONTACT_PAYMENTS,
        {"email": payment.payer_email, "account_id": current_account_id()},
    )
    # Read under the lock: the statuses of the others, and this payment's newest state
    # (the stored row only moves forward; its `tags_applied` is written with a success).
    current = next((row for row in rows if row.id == payment.id), payment)
    others = [row for row in rows if row.id != payment.id]
    synced_at, updated_at = current.crm_synced_at, current.mp_date_last_updated
    if synced_at is not None and updated_at is not None and updated_at < synced_at:
        logger.info("payment %s: CRM already has newer data; sync skipped", payment.mp_payment_id)
        return None
    config = account_config()
    status = effective_status(current.status, current.status_detail, current.raw)
    needed = {
        status_tag(effective_status(other.status, other.status_detail, other.raw))
        for other in others
    } - {None}
    plan = plan_tags(status_tag(status), current.tags_applied, needed, config["GHL_TAG_MODE"])
    payer = (current.raw or {}).get("payer") or {}
    custom_fields = _custom_fields(current, status, config["GHL_CUSTOM_FIELDS"])
    contact = call_gohighlevel(
        lambda client: client.upsert_contact(
            email=payment.payer_email,
            first_name=payer.get("first_name") or None,
            last_name=payer.get("last_name") or None,
            custom_fields=custom_fields or None,
        ),
        renew_lease,
    )
    contact_id = str(contact["id"])
    # Add before removing: a crash between the two leaves both tags for a moment, never
    # neither; the retry computes the same plan (tags_applied is unchanged) and finishes.
    if plan.add:
        renew_lease()
        call_gohighlevel(lambda client: client.add_tags(contact_id, plan.add), renew_lease)
    if plan.remove:
        renew_lease()
        call_gohighlevel(lambda client: client.remove_tags(contact_id, plan.remove), renew_lease)
    stored = (current.ghl_contact_id, current.tags_applied or [], synced_at)
    if (contact_id, plan.applied, updated_at) == stored:
        return None
    return ContactChange(payment.id, contact_id, plan.applied, updated_at)


def _custom_fields(payment: Row[Any], status: str | None, keys: dict[str, str]) -> list[dict]:
    """GHL_CUSTOM_FIELDS' values for the upsert body (UpsertContactDto.customFields:
    `{"id" | "key", "field_value"}`, GoHighLevel/highlevel-api-docs apps/contacts.json).

    A configured `contact.<name>` is a field key; anything else a field id."""
    raw = payment.raw or {}
    values = {
        "payment_id": payment.mp_payment_id,
        "status": status,
        "amount": None if payment.amount is None else str(payment.amount),
        "currency": payment.currency,
        "date": raw.get("date_last_updated") or isoformat(payment.mp_date_last_updated),
        "external_reference": payment.external_reference,
    }
    fields = []
    for ours, key in keys.items():
        value = values.get(ours)
        if value is None:
            continue
        name = "key" if key.startswith("contact.") else "id"
        fields.append({name: key, "field_value": str(value)})
    return fields


@contextmanager
def contact_lock(email: str) -> Iterator[Callable[[], None]]:
    """Hold the Redis lock of the contact with this e-mail; yield a function extending it.

    Serialises the syncs of a contact's payments (each payment's own lock does not):
    their tag plans read each other's statuses. When another worker holds it past
    `LOCK_WAIT`, raises `ContactBusy` (retried shortly); without Redis, goes on unlocked
    (the plans stay correct once every payment of the contact has synced again).
    """
    seconds = current_app.config["LEASE_SECONDS"]
    # A contact is a location's: the location's id is part of its lock's name.
    location = account_config().get("GHL_LOCATION_ID") or ""
    key = f"lock:contact:{location}:{email.strip().lower()}"
    lock = get_redis().lock(key, timeout=seconds, blocking_timeout=CONTACT_LOCK_WAIT)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        logger.warning("%s unavailable (%s); syncing unlocked", key, exc)
        yield no_op
        return
    if not acquired:
        raise ContactBusy(f"another worker is syncing the contact {email!r}; retried shortly")

    def extend() -> None:
        try:
            lock.extend(seconds, replace_ttl=True)
        except (RedisError, LockError) as exc:
            logger.warning("%s could not be extended: %s", key, exc)

    try:
        yield extend
    finally:
        try:
            lock.release()
        except (RedisError, LockError) as exc:
            logger.warning("%s release failed: %s", key, exc)


class ContactBusy(ResourceBusy):
    """The contact's lock is held by another worker: retry the attempt shortly (uncounted)."""


def tag_contact(
    email: str,
    add: list[str] | tuple[str, ...] = (),
    remove: list[str] | tuple[str, ...] = (),
    renew_lease: Callable[[], None] = no_op,
) -> str:
    """Upsert the contact by e-mail, add `add`, then remove `remove`; return the contact id.

    Both idempotent. Adding first, as for payments: a crash between the two calls leaves
    both tags for a moment, never neither, and the retry finishes the removal.
    """
    contact = call_gohighlevel(lambda client: client.upsert_contact(email=email), renew_lease)
    contact_id = str(contact["id"])
    if add:
        renew_lease()
        call_gohighlevel(lambda client: client.add_tags(contact_id, list(add)), renew_lease)
    removing = [tag for tag in remove if tag not in add]
    if removing:
        renew_lease()
        call_gohighlevel(lambda client: client.remove_tags(contact_id, removing), renew_lease)
    return contact_id
