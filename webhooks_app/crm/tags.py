"""Which status tags a payment's contact must lose and gain: pure functions over stored rows.

GHL_TAG_MODE=replace: a contact carries the tag of each of its payments' CURRENT status
only. The plan is derived from the database (the payment's `tags_applied`, written only
with an attempt's success, and the statuses of the contact's other payments), so an
attempt that died between two GoHighLevel calls computes the same plan when retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

APPROVED = "approved"
# Not a MercadoPago status: an `approved` payment with part of its amount refunded.
PARTIALLY_REFUNDED = "partially_refunded"


def effective_status(status: str | None, status_detail: str | None, raw: Any) -> str | None:
    """The status a payment is tagged with: MercadoPago's, except that an `approved`
    payment with a partial refund is `partially_refunded`.

    MercadoPago keeps a partially refunded payment `approved`, with `status_detail`
    "partially_refunded", `transaction_amount_refunded` > 0 and the refund in `refunds`
    (https://www.mercadopago.com.br/developers/en/reference/payments/_payments_id/get;
    a full refund moves it to `refunded`). So `approved` means approved and nothing
    refunded; its tag gives way to the partially refunded one.
    """
    if status != APPROVED:
        return status
    if status_detail == PARTIALLY_REFUNDED:
        return PARTIALLY_REFUNDED
    refunded = (raw or {}).get("transaction_amount_refunded") if isinstance(raw, Mapping) else None
    try:
        if refunded is not None and Decimal(str(refunded)) > 0:
            return PARTIALLY_REFUNDED
    except InvalidOperation:
        pass
    return status


class TagPlan(NamedTuple):
    """The tag calls of one sync, and the payment's `tags_applied` once they succeeded."""

    add: list[str]
    remove: list[str]
    applied: list[str]


def plan_tags(
    new_tag: str | None,
    applied: Iterable[str] | None,
    needed_by_others: set[str],
    mode: str,
) -> TagPlan:
    """What to add and remove for a payment whose status tag is now `new_tag`.

    `applied`: the tags the payment put on the contact (its stored `tags_applied`);
    `needed_by_others`: the status tags of the contact's other payments, which stay.
    In `accumulate` mode nothing is removed and `applied` only grows.
    """
    previous = list(applied or [])
    add = [new_tag] if new_tag else []
    if mode == "accumulate":
        return TagPlan(add, [], previous + [tag for tag in add if tag not in previous])
    remove = [tag for tag in previous if tag != new_tag and tag not in needed_by_others]
    return TagPlan(add, remove, add)
