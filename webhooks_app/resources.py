"""Models of the MercadoPago resources besides payments: merchant orders, chargebacks and
subscriptions' recurring charges (authorized payments)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import BigId, account_column
from .pii import MaskedJSON
from .timeutil import isoformat, utcnow


def _money(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


class MerchantOrder(db.Model):
    """The merchant's copy of a MercadoPago merchant order (migration f4b2c9d1e8a7)."""

    __tablename__ = "merchant_orders"
    __table_args__ = (
        Index("ix_merchant_orders_external_reference", "external_reference"),
        db.UniqueConstraint("account_id", "mp_order_id", name="uq_merchant_orders_account_order"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    mp_order_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))  # opened, closed, expired
    order_status: Mapped[str | None] = mapped_column(String(32))  # paid, payment_required, …
    total_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    paid_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    external_reference: Mapped[str | None] = mapped_column(String(255))
    preference_id: Mapped[str | None] = mapped_column(String(255))
    payment_ids: Mapped[list[str] | None] = mapped_column(JSON)
    # MercadoPago's `last_updated`: an older read never overwrites a newer one.
    mp_last_updated: Mapped[datetime | None] = mapped_column(DateTime)
    raw: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON)  # PII_MASKING: e-mails
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mp_order_id": self.mp_order_id,
            "status": self.status,
            "order_status": self.order_status,
            "total_amount": _money(self.total_amount),
            "paid_amount": _money(self.paid_amount),
            "currency": self.currency,
            "external_reference": self.external_reference,
            "preference_id": self.preference_id,
            "payment_ids": self.payment_ids or [],
            "mp_last_updated": isoformat(self.mp_last_updated),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class MerchantOrderPayment(db.Model):
    """A payment an order lists, by MercadoPago id (it may not be stored yet)."""

    __tablename__ = "merchant_order_payments"
    __table_args__ = (Index("ix_merchant_order_payments_mp_payment_id", "mp_payment_id"),)

    merchant_order_id: Mapped[int] = mapped_column(
        ForeignKey("merchant_orders.id"), primary_key=True
    )
    mp_payment_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class Chargeback(db.Model):
    """The merchant's copy of a MercadoPago chargeback (migration f4b2c9d1e8a7)."""

    __tablename__ = "chargebacks"
    __table_args__ = (
        Index("ix_chargebacks_mp_payment_id", "mp_payment_id"),
        db.UniqueConstraint(
            "account_id", "mp_chargeback_id", name="uq_chargebacks_account_chargeback"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    mp_chargeback_id: Mapped[str] = mapped_column(String(64))
    # The first of `payments` (a case almost always has one), for lookups by payment.
    mp_payment_id: Mapped[str | None] = mapped_column(String(64))
    payment_ids: Mapped[list[str] | None] = mapped_column(JSON)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    coverage_applied: Mapped[bool | None] = mapped_column(Boolean)
    # MercadoPago spells it `coverage_elegible`.
    coverage_eligible: Mapped[bool | None] = mapped_column(Boolean)
    documentation_required: Mapped[bool | None] = mapped_column(Boolean)
    documentation_status: Mapped[str | None] = mapped_column(String(32))
    date_documentation_deadline: Mapped[datetime | None] = mapped_column(DateTime)
    mp_date_created: Mapped[datetime | None] = mapped_column(DateTime)
    mp_date_last_updated: Mapped[datetime | None] = mapped_column(DateTime)
    raw: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON)  # PII_MASKING: e-mails
    ghl_contact_id: Mapped[str | None] = mapped_column(String(64))
    # Set once the new-chargeback alert was attempted: one alert per chargeback.
    alerted_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mp_chargeback_id": self.mp_chargeback_id,
            "mp_payment_id": self.mp_payment_id,
            "payment_ids": self.payment_ids or [],
            "amount": _money(self.amount),
            "currency": self.currency,
            "coverage_applied": self.coverage_applied,
            "coverage_eligible": self.coverage_eligible,
            "documentation_required": self.documentation_required,
            "documentation_status": self.documentation_status,
            "date_documentation_deadline": isoformat(self.date_documentation_deadline),
            "mp_date_created": isoformat(self.mp_date_created),
            "mp_date_last_updated": isoformat(self.mp_date_last_updated),
            "ghl_contact_id": self.ghl_contact_id,
            "alerted_at": isoformat(self.alerted_at),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class AuthorizedPayment(db.Model):
    """One recurring charge of a subscription (MercadoPago's authorized payment, topic
    `subscription_authorized_payment`), as last read (migration c7d2e5a8b104).

    `mp_preapproval_id` always names its subscription; `subscription_id` links the stored
    one once it is stored (the subscription handler fills it when it comes later). The
    payment it made is linked by MercadoPago id, like an order's: it may not be stored yet.
    """

    __tablename__ = "authorized_payments"
    __table_args__ = (
        db.UniqueConstraint(
            "account_id",
            "mp_authorized_payment_id",
            name="uq_authorized_payments_account_authorized_payment",
        ),
        Index("ix_authorized_payments_mp_preapproval_id", "mp_preapproval_id"),
        Index("ix_authorized_payments_mp_payment_id", "mp_payment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    mp_authorized_payment_id: Mapped[str] = mapped_column(String(64))
    mp_preapproval_id: Mapped[str | None] = mapped_column(String(64))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    mp_payment_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))  # scheduled, processed, recycling …
    payment_status: Mapped[str | None] = mapped_column(String(32))
    payment_status_detail: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    debit_date: Mapped[datetime | None] = mapped_column(DateTime)
    retry_attempt: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    external_reference: Mapped[str | None] = mapped_column(String(255))
    # MercadoPago's `last_modified`: an older read never overwrites a newer one.
    mp_last_modified: Mapped[datetime | None] = mapped_column(DateTime)
    # MercadoPago's copy without `payer_id`, its one personal datum (see handlers/
    # authorized_payment.py): the payer is the subscription's.
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mp_authorized_payment_id": self.mp_authorized_payment_id,
            "mp_preapproval_id": self.mp_preapproval_id,
            "mp_payment_id": self.mp_payment_id,
            "status": self.status,
            "payment_status": self.payment_status,
            "payment_status_detail": self.payment_status_detail,
            "amount": _money(self.amount),
            "currency": self.currency,
            "debit_date": isoformat(self.debit_date),
            "retry_attempt": self.retry_attempt,
            "reason": self.reason,
            "external_reference": self.external_reference,
            "mp_last_modified": isoformat(self.mp_last_modified),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }
