"""GoHighLevel as the CRM: upsert the payer as a contact, tag them with the payment's status.

Every step is idempotent: the contact is upserted by e-mail, and adding a tag twice
keeps one tag. Calls share one rate limit across workers (GHL_RATE_LIMIT).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app
from redis import RedisError
from sqlalchemy import Row

from ..clients import ghl_rate_limiter, gohighlevel_client
from ..metrics import observe_api_call
from ..services import GoHighLevelClient, RateLimitedError
from .base import ContactChange, no_op

logger = logging.getLogger(__name__)

T = TypeVar("T")

STAGE = "gohighlevel"


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
                # GoHighLevel's own X-RateLimit-* of the last answer: wait when none is left.
                limiter.observe(client.last_rate_limit)
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
            if limiter is not None:
                limiter.pause(pause)
            if time.monotonic() + pause > deadline:
                raise
            logger.info("GoHighLevel answered 429; waiting %.1fs", pause)
            renew_lease()
            time.sleep(pause)


def status_tag(status: str | None) -> str | None:
    """The tag for a payment status (GHL_STATUS_TAGS), if it has one."""
    return current_app.config["GHL_STATUS_TAGS"].get(status or "")


def sync_contact(
    payment: Row[Any], renew_lease: Callable[[], None] = no_op
) -> ContactChange | None:
    """Upsert the payer as a GHL contact and tag them with the payment's current status.

    Returns the payment's new GHL fields (None if unchanged) without writing them: the
    caller records them with the attempt's success, in one transaction. `payment` is
    the payment's row as stored (`handlers.payment.upsert_payment`'s).
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
    tag = status_tag(payment.status)
    if tag:
        call_gohighlevel(lambda client: client.add_tags(contact_id, [tag]), renew_lease)
        if tag not in tags:
            tags.append(tag)
    if (contact_id, tags) == (payment.ghl_contact_id, payment.tags_applied or []):
        return None
    return ContactChange(payment.id, contact_id, tags)


def tag_contact(
    email: str,
    add: list[str] | tuple[str, ...] = (),
    remove: list[str] | tuple[str, ...] = (),
    renew_lease: Callable[[], None] = no_op,
) -> str:
    """Upsert the contact by e-mail, remove `remove` then add `add`; return the contact id."""
    contact = call_gohighlevel(lambda client: client.upsert_contact(email=email), renew_lease)
    contact_id = str(contact["id"])
    removing = [tag for tag in remove if tag not in add]
    if removing:
        renew_lease()
        call_gohighlevel(lambda client: client.remove_tags(contact_id, removing), renew_lease)
    if add:
        renew_lease()
        call_gohighlevel(lambda client: client.add_tags(contact_id, list(add)), renew_lease)
    return contact_id
