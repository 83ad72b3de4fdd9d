"""What a CRM sync returns, the statement that writes it, and the interface a CRM implements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import DateTime, Row, bindparam, func, or_, update

from ..models import Payment


def no_op() -> None:
    """A `renew_lease` that renews nothing (outside an attempt)."""
    return None


class ContactChange(NamedTuple):
    """New CRM fields of a payment, for the caller to write with `SET_CONTACT`."""

    payment_id: int
    contact_id: str
    # The tags the payment now has on the contact (replace mode: its current status's).
    tags: list[str]
    # The payment's `mp_date_last_updated` these were synced from (None: no date known).
    synced_at: datetime | None = None

    def params(self) -> dict[str, Any]:
        """`SET_CONTACT`'s bound values."""
        return {
            "contact_payment_id": self.payment_id,
            "new_contact_id": self.contact_id,
            "new_tags": self.tags,
            "new_synced_at": self.synced_at,
        }


_payments = Payment.__table__
# Built once; `updated_at` is set by the column's onupdate (bind names differ from the
# column names: SQLAlchemy reserves those in SET).
# The WHERE refuses to record a sync of older data than the one recorded (a late, older
# notification never moves the payment's CRM state back).
_synced_at = bindparam("new_synced_at", type_=DateTime())
SET_CONTACT = (
    update(_payments)
    .where(
        _payments.c.id == bindparam("contact_payment_id"),
        or_(
            _payments.c.crm_synced_at.is_(None),
            _synced_at.is_(None),
            _payments.c.crm_synced_at <= _synced_at,
        ),
    )
    .values(
        ghl_contact_id=bindparam("new_contact_id"),
        tags_applied=bindparam("new_tags"),
        # No date known: the one recorded stays.
        crm_synced_at=func.coalesce(_synced_at, _payments.c.crm_synced_at),
    )
)


class CRM(Protocol):
    """A CRM the payments are synced to."""

    # The upstream stage its calls are counted under (`api_call_duration_seconds`).
    stage: str

    def sync(
        self, payment: Row[Any], renew_lease: Callable[[], None] = no_op
    ) -> ContactChange | None:
        """Bring the payer's contact up to date with the payment; return the payment's new
        CRM fields (None if unchanged) without writing them. Raises on failure.

        `payment` is the payment's row as stored (`handlers.payment.PAYMENT_STATE`; only
        its `id`, `mp_payment_id` and `payer_email` are relied on: the sync reads the
        payment's current state again under the contact's lock); `renew_lease` is
        called between calls and while waiting for a rate-limit slot. Safe to run
        again after a partial success: what to remove and add is derived from the
        database, not from memory.
        """
        ...

    def tag(
        self,
        email: str,
        add: list[str] | tuple[str, ...] = (),
        remove: list[str] | tuple[str, ...] = (),
        renew_lease: Callable[[], None] = no_op,
    ) -> str:
        """Upsert the contact with this e-mail, add then remove tags; return its contact id.

        Idempotent (removing an absent tag or adding a present one changes nothing), for
        resources other than payments (chargebacks, subscriptions, fraud alerts, claims). Raises on
        failure.
        """
        ...
