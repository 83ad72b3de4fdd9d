"""MercadoPago payment records: defaults, updates, timestamps and search.

Pure functions over plain dicts; `SandboxState` stores the dicts and holds the lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

# MercadoPago answers timestamps in its own zone, e.g. "2026-11-29T10:00:00.000-04:00".
MP_TZ = timezone(timedelta(hours=-4))

DEFAULT_STATUS_DETAIL = {
    "approved": "accredited",
    "authorized": "pending_capture",
    "pending": "pending_waiting_payment",
    "in_process": "pending_contingency",
    "in_mediation": "in_process",
    "rejected": "cc_rejected_other_reason",
    "cancelled": "by_collector",
    "refunded": "refunded",
    "charged_back": "settled",
}

DATE_FIELDS = (
    "date_created",
    "date_last_updated",
    "date_approved",
    "money_release_date",
)
SORT_FIELDS = (*DATE_FIELDS, "id", "transaction_amount")
# Search parameters matched by equality against the payment (dotted = nested).
FILTER_FIELDS = (
    "id",
    "status",
    "status_detail",
    "external_reference",
    "payment_method_id",
    "payment_type_id",
    "currency_id",
    "payer.email",
    "payer.id",
)
DEFAULT_LIMIT = 30
MAX_LIMIT = 1000

_RELATIVE = re.compile(
    r"NOW(?:(?P<sign>[+-])(?P<amount>\d+)(?P<unit>SECONDS?|MINUTES?|HOURS?|DAYS?|WEEKS?|MONTHS?))?",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}


def format_mp_time(value: datetime) -> str:
    """Render an aware datetime the way MercadoPago does (milliseconds, -04:00 offset)."""
    return value.astimezone(MP_TZ).isoformat(timespec="milliseconds")


def parse_mp_time(value: Any, now: datetime | None = None) -> datetime:
    """Parse ISO 8601 (naive = UTC) or MercadoPago's relative `NOW-1DAYS` forms to aware UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        # An unescaped "+" of an offset arrives as a space.
        text = str(value).strip().replace(" ", "+")
        match = _RELATIVE.fullmatch(text)
        if match:
            parsed = now or datetime.now(UTC)
            if match["sign"]:
                parsed += _relative_delta(match["sign"], int(match["amount"]), match["unit"])
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"invalid date {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _relative_delta(sign: str, amount: int, unit: str) -> timedelta:
    unit = unit.upper().rstrip("S")
    # MONTH is taken as 30 days: close enough for a sandbox search window.
    seconds = amount * (30 * 86400 if unit == "MONTH" else _UNIT_SECONDS[unit])
    return timedelta(seconds=seconds if sign == "+" else -seconds)


def _as_mp_time(value: Any) -> Any:
    """Datetimes given by callers are stored in MercadoPago's string form."""
    return format_mp_time(value) if isinstance(value, datetime) else value


def new_payment(payment_id: int, now: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Build a complete payment with realistic defaults, overridden by `fields`."""
    status = fields.get("status", "approved")
    amount = float(fields.get("transaction_amount", 100.0))
    payment: dict[str, Any] = {
        "id": payment_id,
        "date_created": now,
        "date_approved": now if status == "approved" else None,
        "date_last_updated": now,
        "date_of_expiration": None,
        "money_release_date": None,
        "operation_type": "regular_payment",
        "issuer_id": "25",
        "payment_method_id": "visa",
        "payment_type_id": "credit_card",
        "status": status,
        "status_detail": DEFAULT_STATUS_DETAIL.get(status, status),
        "currency_id": "BRL",
        "description": f"Sandbox payment {payment_id}",
        "live_mode": False,
        "sponsor_id": None,
        "authorization_code": None,
        "collector_id": 123456789,
        "payer": {
            "id": str(900000000 + payment_id % 100000000),
            "type": None,
            "email": f"buyer{payment_id}@example.com",
            "first_name": "Test",
            "last_name": "Buyer",
            "identification": {"type": "CPF", "number": "19119119100"},
            "phone": {"area_code": "11", "number": "999999999", "extension": None},
            "entity_type": None,
        },
        "metadata": {},
        "additional_info": {},
        "order": {},
        "external_reference": f"order-{payment_id}",
        "transaction_amount": amount,
        "transaction_amount_refunded": 0,
        "coupon_amount": 0,
        "transaction_details": {
            "net_received_amount": round(amount * 0.95, 2),
            "total_paid_amount": amount,
            "overpaid_amount": 0,
            "installment_amount": amount,
        },
        "fee_details": [],
        "captured": True,
        "binary_mode": False,
        "statement_descriptor": "SANDBOX",
        "installments": 1,
        "notification_url": None,
        "refunds": [],
        "processing_mode": "aggregator",
    }
    return update_payment(payment, fields, now=None)


def _refund(payment: dict[str, Any], amount: float, when: str) -> dict[str, Any]:
    """A refund as MercadoPago lists it in a payment's `refunds` (GET /v1/payments/{id}/refunds
    gives the same objects: id, payment_id, amount, source, date_created, status …)."""
    return {
        "id": int(payment["id"]) * 100 + len(payment.get("refunds") or []) + 1,
        "payment_id": payment["id"],
        "amount": round(amount, 2),
        "metadata": {},
        "source": {"id": str(payment.get("collector_id")), "name": "Sandbox", "type": "collector"},
        "date_created": when,
        "unique_sequence_number": None,
        "refund_mode": "standard",
        "adjustment_amount": 0,
        "status": "approved",
        "reason": None,
    }


def apply_refund(payment: dict[str, Any], amount: float | None, when: str) -> None:
    """Refund `amount` (None: what is left) as MercadoPago does: a refund is appended to
    `refunds` and counted in `transaction_amount_refunded`; while part of the amount is
    left the payment stays `approved` with `status_detail` "partially_refunded", once all
    of it is refunded it is `refunded`."""
    total = float(payment.get("transaction_amount") or 0)
    refunded = float(payment.get("transaction_amount_refunded") or 0)
    amount = total - refunded if amount is None else float(amount)
    if amount <= 0 or refunded + amount > total + 1e-9:
        raise ValueError(f"refund must be positive and at most {total - refunded:.2f}")
    payment.setdefault("refunds", []).append(_refund(payment, amount, when))
    payment["transaction_amount_refunded"] = round(refunded + amount, 2)
    if payment["transaction_amount_refunded"] >= total - 1e-9:
        payment["status"], payment["status_detail"] = "refunded", "refunded"
    else:
        payment["status"], payment["status_detail"] = "approved", "partially_refunded"


def update_payment(
    payment: dict[str, Any], fields: Mapping[str, Any], now: str | None
) -> dict[str, Any]:
    """Apply `fields` to `payment` in place; `now` (when given) stamps the change.

    `refund` (an amount, or null for the rest) refunds it (`apply_refund`); setting the
    status `refunded` without one refunds what is left."""
    fields = {key: _as_mp_time(value) for key, value in fields.items() if key != "id"}
    refund = fields.pop("refund", False)
    old_status = payment.get("status")
    payer = fields.pop("payer", None)
    payment.update(fields)
    if payer:
        # Merge so that setting only the e-mail keeps the generated name.
        payment["payer"] = {**payment.get("payer", {}), **payer}
    if "transaction_amount" in fields:
        payment["transaction_amount"] = float(payment["transaction_amount"])
    new_status = payment.get("status")
    if new_status != old_status and "status_detail" not in fields:
        payment["status_detail"] = DEFAULT_STATUS_DETAIL.get(new_status, new_status)
    when = now or payment["date_last_updated"]
    if refund is not False:
        apply_refund(payment, None if refund is None else float(refund), when)
    elif new_status == "refunded" and not payment.get("refunds"):
        if float(payment.get("transaction_amount") or 0) > 0:
            apply_refund(payment, None, when)
    new_status = payment.get("status")
    if now is not None:
        if new_status == "approved" and not payment.get("date_approved"):
            payment["date_approved"] = now
        if "date_last_updated" not in fields:
            payment["date_last_updated"] = now
    return payment


def _nested(payment: Mapping[str, Any], dotted: str) -> Any:
    value: Any = payment
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _int_arg(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _sort_key(field_name: str):
    def key(payment: Mapping[str, Any]) -> tuple:
        value = payment.get(field_name)
        if value is None:
            return (1, 0)  # missing values go last in both directions
        if field_name in DATE_FIELDS:
            return (0, parse_mp_time(value).timestamp())
        return (0, value)

    return key


def search_payments(
    payments: Iterable[Mapping[str, Any]], args: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    """Answer `GET /v1/payments/search`; raise ValueError for a bad parameter."""
    sort = args.get("sort") or "date_created"
    criteria = (args.get("criteria") or "desc").lower()
    range_field = args.get("range") or "date_created"
    if sort not in SORT_FIELDS:
        raise ValueError(f"sort must be one of {list(SORT_FIELDS)}")
    if criteria not in ("asc", "desc"):
        raise ValueError("criteria must be asc or desc")
    if range_field not in DATE_FIELDS:
        raise ValueError(f"range must be one of {list(DATE_FIELDS)}")
    offset = _int_arg(args, "offset", 0)
    limit = min(_int_arg(args, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    begin = parse_mp_time(args["begin_date"], now) if args.get("begin_date") else None
    end = parse_mp_time(args["end_date"], now) if args.get("end_date") else None

    selected = []
    for payment in payments:
        if any(
            name in args and str(_nested(payment, name)) != args[name] for name in FILTER_FIELDS
        ):
            continue
        if begin or end:
            raw = payment.get(range_field)
            if raw is None:
                continue
            when = parse_mp_time(raw)
            if (begin and when < begin) or (end and when > end):
                continue
        selected.append(payment)

    selected.sort(key=_sort_key(sort), reverse=criteria == "desc")
    if criteria == "desc":
        # Keep payments without the sort field last, as in ascending order.
        selected.sort(key=lambda p: p.get(sort) is None)
    return {
        "paging": {"total": len(selected), "limit": limit, "offset": offset},
        "results": selected[offset : offset + limit],
    }
