"""Filters on events and payments: one parser shared by the API, the admin and the CLI.

Raw strings (query-string arguments, form fields, CLI options, JSON values)
become a typed filter that builds the SQLAlchemy query. A value that cannot be
used raises FilterError, whose message names the parameter and what it accepts;
each surface turns it into its own error (400, a flashed message, exit code 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, or_, select

from .extensions import db
from .models import EventStatus, Payment, WebhookEvent
from .timeutil import to_naive_utc, utcnow

EVENT_FILTER_PARAMS = ("account", "status", "type", "since", "until", "q")
PAYMENT_FILTER_PARAMS = ("account", "status", "q")

# fullmatch everywhere: `$` would also accept a trailing "\n".
RELATIVE_TIME = re.compile(r"(\d{1,6})\s*([smhdw])")
TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
PAYMENT_STATUS = re.compile(r"[a-z_]{1,32}")
# Control characters (NUL above all: PostgreSQL refuses it in text) are never a real search.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MAX_TYPE_LENGTH = 64
MAX_TEXT_LENGTH = 255
# A payer e-mail search that matches at most this many payments is sent as a literal
# id list (each branch of the OR then uses its index); more falls back to a subquery.
EMAIL_ID_LIST_CAP = 500


def of_account(query: Any, model: Any, account_id: int | None) -> Any:
    """The query narrowed to one account's rows of `model` (None: every account's): the one
    place the admin's, the API's and the CLI's queries are scoped."""
    return query if account_id is None else query.where(model.account_id == account_id)


class FilterError(ValueError):
    """A filter or paging value cannot be used; the message says which one and why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class EventFilter:
    """Which webhook events: by status, type, received time and free text."""

    statuses: tuple[str, ...] = ()
    type: str | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until
    q: str | None = None
    # One account's events (accounts.py); None: every account's.
    account_id: int | None = None
    # The cleaned strings it was parsed from, to put back into links and forms.
    args: dict[str, str] = field(default_factory=dict, compare=False)

    def apply(self, query: Select) -> Select:
        """Add this filter's conditions to a query over WebhookEvent."""
        query = of_account(query, WebhookEvent, self.account_id)
        if self.statuses:
            query = query.where(WebhookEvent.status.in_(self.statuses))
        if self.type:
            query = query.where(WebhookEvent.type == self.type)
        if self.since is not None:
            query = query.where(WebhookEvent.received_at >= self.since)
        if self.until is not None:
            query = query.where(WebhookEvent.received_at < self.until)
        if self.q:
            query = query.where(_event_text_match(self.q))
        return query

    def query(self) -> Select:
        """SELECT the matching events (unordered)."""
        return self.apply(select(WebhookEvent))

    def restricted_to(self, status: str) -> EventFilter | None:
        """This filter narrowed to one status; None when it already excludes that status."""
        if self.statuses and status not in self.statuses:
            return None
        return replace(self, statuses=(status,), args={**self.args, "status": status})

    def describe(self) -> str:
        """A short human summary, e.g. `status=failed type=payment`."""
        return " ".join(f"{key}={value}" for key, value in self.args.items()) or "all events"


@dataclass(frozen=True)
class PaymentFilter:
    """Which payments: by MercadoPago status and free text."""

    status: str | None = None
    q: str | None = None
    account_id: int | None = None
    args: dict[str, str] = field(default_factory=dict, compare=False)

    def apply(self, query: Select) -> Select:
        query = of_account(query, Payment, self.account_id)
        if self.status:
            query = query.where(Payment.status == self.status)
        if self.q:
            query = query.where(
                or_(
                    Payment.mp_payment_id == self.q,
                    Payment.external_reference == self.q,
                    _email_contains(self.q),
                )
            )
        return query

    def query(self) -> Select:
        return self.apply(select(Payment))


def parse_event_filter(args: Mapping[str, Any], *, now: datetime | None = None) -> EventFilter:
    """Build an EventFilter from raw values (missing or empty = no condition)."""
    raw = _clean(args, EVENT_FILTER_PARAMS)
    now = now or utcnow()
    statuses = parse_statuses(raw.get("status"))
    event_type = raw.get("type")
    if event_type is not None:
        _check_text("type", event_type, MAX_TYPE_LENGTH)
    since = parse_time("since", raw.get("since"), now=now)
    until = parse_time("until", raw.get("until"), now=now, end_of_day=True)
    if since is not None and until is not None and since >= until:
        raise FilterError("since", "must be earlier than until")
    q = raw.get("q")
    if q is not None:
        _check_text("q", q, MAX_TEXT_LENGTH)
    return EventFilter(
        statuses=statuses,
        type=event_type,
        since=since,
        until=until,
        q=q,
        account_id=parse_account(raw.get("account")),
        args=raw,
    )


def parse_payment_filter(args: Mapping[str, Any]) -> PaymentFilter:
    """Build a PaymentFilter from raw values."""
    raw = _clean(args, PAYMENT_FILTER_PARAMS)
    status = raw.get("status")
    if status is not None and not PAYMENT_STATUS.fullmatch(status):
        raise FilterError("status", "must be a MercadoPago payment status such as approved")
    q = raw.get("q")
    if q is not None:
        _check_text("q", q, MAX_TEXT_LENGTH)
    return PaymentFilter(
        status=status, q=q, account_id=parse_account(raw.get("account")), args=raw
    )


def parse_account(value: str | None) -> int | None:
    """An `account` filter (its slug) as the account's id; None: every account."""
    if value is None:
        return None
    from .accounts import by_slug  # accounts imports the models this imports

    account = by_slug(value)
    if account is None:
        raise FilterError("account", f"no account has the slug {value!r}")
    return account.id


def parse_statuses(value: str | None) -> tuple[str, ...]:
    """`failed` or `failed,pending` -> a tuple of known event statuses."""
    if value is None:
        return ()
    statuses = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [status for status in statuses if status not in EventStatus.ALL]
    if unknown or not statuses:
        raise FilterError(
            "status", f"must be one or more (comma-separated) of {', '.join(EventStatus.ALL)}"
        )
    return statuses


def parse_time(
    param: str, value: str | None, *, now: datetime | None = None, end_of_day: bool = False
) -> datetime | None:
    """An ISO 8601 date or datetime, or a time ago like `90m`, `2h`, `7d`, as naive UTC.

    A datetime without a zone is UTC. A bare date is its midnight, or with
    `end_of_day` the next midnight, so that `until=2026-11-29` includes that day.
    """
    if value is None:
        return None
    hint = "must be an ISO 8601 date or datetime (2026-11-29, 2026-11-29T10:00:00Z) or 90m, 2h, 7d"
    try:
        relative = RELATIVE_TIME.fullmatch(value)
        if relative:
            amount, unit = int(relative.group(1)), TIME_UNITS[relative.group(2)]
            return (now or utcnow()) - timedelta(**{unit: amount})
        if DATE_ONLY.fullmatch(value):
            day = datetime.combine(date.fromisoformat(value), datetime.min.time())
            return day + timedelta(days=1) if end_of_day else day
        return to_naive_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise FilterError(param, hint) from None


def parse_int(param: str, value: Any, *, default: int, minimum: int, maximum: int) -> int:
    """A whole number within [minimum, maximum]; above the maximum is capped, below refused."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FilterError(param, "must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise FilterError(param, f"must be a whole number, got {value!r}") from None
    if number < minimum:
        raise FilterError(param, f"must be at least {minimum}")
    return min(number, maximum)


def parse_bool(param: str, value: Any) -> bool:
    """true/false, 1/0, yes/no, on/off (and JSON booleans)."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise FilterError(param, "must be true or false")


def _clean(args: Mapping[str, Any], params: tuple[str, ...]) -> dict[str, str]:
    """The known parameters that have a value, stripped; non-strings are refused."""
    raw: dict[str, str] = {}
    for param in params:
        value = args.get(param)
        if value is None:
            continue
        if not isinstance(value, str):
            raise FilterError(param, "must be a string")
        value = value.strip()
        if value:
            raw[param] = value
    return raw


def _check_text(param: str, value: str, max_length: int) -> None:
    if len(value) > max_length:
        raise FilterError(param, f"must be at most {max_length} characters")
    if CONTROL_CHARS.search(value):
        raise FilterError(param, "must not contain control characters")


def _email_contains(text: str) -> ColumnElement[bool]:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(Payment.payer_email).like(f"%{escaped}%", escape="\\")


def _event_text_match(text: str) -> ColumnElement[bool]:
    """Webhook id or resource id equal to `text`, or a payer e-mail containing it."""
    matching = select(Payment.id).where(_email_contains(text))
    ids = list(db.session.scalars(matching.limit(EMAIL_ID_LIST_CAP + 1)))
    if len(ids) > EMAIL_ID_LIST_CAP:
        by_email: ColumnElement[bool] = WebhookEvent.payment_id.in_(matching)
    else:
        by_email = WebhookEvent.payment_id.in_(ids) if ids else false()
    return or_(WebhookEvent.webhook_id == text, WebhookEvent.resource_id == text, by_email)
