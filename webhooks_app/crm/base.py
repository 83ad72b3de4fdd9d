"""What a CRM sync returns, the statement that writes it, and the interface a CRM implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Row, bindparam, update

from ..models import Payment


def no_op() -> None:
    """A `renew_lease` that renews nothing (outside an attempt)."""
    return None


class ContactChange(NamedTuple):
    """New CRM fields of a payment, for the caller to write with `SET_CONTACT`."""

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


_payments = Payment.__table__
# Built once; `updated_at` is set by the column's onupdate (bind names differ from the
# column names: SQLAlchemy reserves those in SET).
SET_CONTACT = (
    update(_payments)
    .where(_payments.c.id == bindparam("contact_payment_id"))
    .values(ghl_contact_id=bindparam("new_contact_id"), tags_applied=bindparam("new_tags"))
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

        `payment` is the payment's row as stored (`handlers.payment.PAYMENT_STATE`);
        `renew_lease` is called between calls and while waiting for a rate-limit slot.
        """
        ...

    def tag(
        self,
        email: str,
        add: list[str] | tuple[str, ...] = (),
        remove: list[str] | tuple[str, ...] = (),
        renew_lease: Callable[[], None] = no_op,
    ) -> str:
        """Upsert the contact with this e-mail, remove then add tags; return its contact id.

        Idempotent (removing an absent tag or adding a present one changes nothing), for
        resources other than payments (subscriptions, fraud alerts, claims). Raises on
        failure.
        """
        ...
