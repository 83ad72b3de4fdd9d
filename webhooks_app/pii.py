"""Personal data of payers: what is masked, what is kept, how an address is recognised.

One module for the three places that need it: masking at rest (`PII_MASKING`),
retention and erasure (a stored copy reduced to the fields the service uses; which
tables hold what: personal_data.py) and the logs (no line carries an e-mail address).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

# Good enough to find addresses in free text (log lines, error messages, bodies);
# not a validator.
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")

# What a payment's stored copy keeps once reduced (retention, erasure): the fields the
# service reads (pipeline._payment_values) and the financial facts, none of the payer's
# personal data. Names as in MercadoPago's GET /v1/payments/{id} response
# (https://www.mercadopago.com.br/developers/en/reference/payments/_payments_id/get).
KEPT_PAYMENT_FIELDS = (
    "id",
    "status",
    "status_detail",
    "transaction_amount",
    "transaction_amount_refunded",
    "currency_id",
    "date_created",
    "date_approved",
    "date_last_updated",
    "money_release_date",
    "external_reference",
    "operation_type",
    "payment_method_id",
    "payment_type_id",
    "installments",
    "live_mode",
    "collector_id",
)


def mask_email(address: str) -> str:
    """`juan.perez@example.com` -> `j***@example.com` (the domain kept, for support)."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_digits(value: Any) -> Any:
    """An identification or phone number -> stars and its last 2 digits."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return value
    text = str(value)
    return "*" * max(0, len(text) - 2) + text[-2:] if len(text) > 2 else "**"


def redact_emails(text: str) -> str:
    """Every e-mail address in `text` masked (`j***@example.com`)."""
    if "@" not in text:  # the common case, without running the regex
        return text
    return EMAIL.sub(lambda match: mask_email(match.group(0)), text)


def _masked(value: Any) -> Any:
    """A JSON value with every e-mail address in its strings masked."""
    if isinstance(value, str):
        return redact_emails(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def mask_payment(data: dict[str, Any]) -> dict[str, Any]:
    """The copy of MercadoPago's payment data to store: as is, or masked with PII_MASKING.

    Masked: every e-mail address (payer.email and any other), the payer's and the
    cardholder's identification number and the payer's phone number (last 2 digits
    kept). Names stay: the GoHighLevel contact is created from them in the same
    attempt (crm.gohighlevel.sync_contact reads them from the stored copy). The real e-mail
    stays in `payments.payer_email`, the CRM's key (see README, "Retention and erasure").
    """
    if not current_app.config.get("PII_MASKING"):
        return data
    masked = _masked(copy.deepcopy(data))
    payer = masked.get("payer")
    if isinstance(payer, dict):
        _mask_number(payer.get("identification"))
        _mask_number(payer.get("phone"))
    card = masked.get("card")
    cardholder = card.get("cardholder") if isinstance(card, dict) else None
    if isinstance(cardholder, dict):
        _mask_number(cardholder.get("identification"))
    return masked


def _mask_number(part: Any) -> None:
    if isinstance(part, dict) and part.get("number") is not None:
        part["number"] = mask_digits(part["number"])


def reduce_raw(raw: Any, kept: tuple[str, ...] = KEPT_PAYMENT_FIELDS) -> dict[str, Any] | None:
    """A stored copy without the payer's personal data: its `kept` top-level fields only
    (a payment's by default; personal_data.PERSONAL_TABLES says each table's)."""
    if not isinstance(raw, dict):
        return None
    return {name: raw[name] for name in kept if name in raw}


class MaskedJSON(TypeDecorator[Any]):
    """A JSON column whose value is stored with every e-mail address masked when
    PII_MASKING is on: MercadoPago's copies of subscriptions, alerts, orders and
    chargebacks, whichever statement writes them (ORM or Core). Payments are masked
    by `mask_payment`, which also masks their identification and phone numbers."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is not None and has_app_context() and current_app.config.get("PII_MASKING"):
            return _masked(value)
        return value


def normalise_email(address: str) -> str:
    return address.strip().lower()


def subject_hash(address: str, key: str | bytes | None) -> str | None:
    """HMAC-SHA256 of the normalised address with `key` (None without a key).

    Keyed, so that nobody holding the table can test a list of known addresses
    against it without also holding the key.
    """
    if not key:
        return None
    key_bytes = key.encode() if isinstance(key, str) else key
    digest = hmac.new(key_bytes, normalise_email(address).encode(), hashlib.sha256)
    return digest.hexdigest()
