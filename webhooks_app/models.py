"""Database models: received events, their processing attempts, and payments."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .notifications import RESOURCE_ID_PATTERN
from .pii import MaskedJSON
from .timeutil import isoformat, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Finished events whose stored copies retention has not dropped yet (migration a5c8e1f37d42):
# the predicate of the purge's partial index, repeated word for word by the purge's query
# (the planners use a partial index only for a WHERE that contains its predicate).
PURGE_DUE = "purged_at IS NULL AND status IN ('success', 'ignored')"


def account_column() -> Any:
    """The `account_id` of a row that belongs to one account (the default one: 1)."""
    return mapped_column(ForeignKey("accounts.id"), default=1, server_default="1")


class EventStatus:
    """The life of a webhook event: pending -> processing -> success | failed, or ignored."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    IGNORED = "ignored"

    ALL = (PENDING, PROCESSING, SUCCESS, FAILED, IGNORED)
    FINAL = (SUCCESS, FAILED, IGNORED)


class AttemptOutcome:
    """How one processing attempt ended."""

    RUNNING = "running"
    SUCCESS = "success"
    IGNORED = "ignored"
    RETRY = "retry"  # failed; another attempt is scheduled
    FAILED = "failed"  # failed; the event is dead-lettered
    LOST = "lost"  # the worker died (lease expired); the reconciler retried the event
    INTERRUPTED = "interrupted"  # the worker was stopped; the event was handed back
    # A lock the attempt needed was held by another worker (busy.ResourceBusy): tried
    # again shortly, not counted against the retry budget.
    BUSY = "busy"


class Payment(db.Model):
    """The merchant's copy of a MercadoPago payment, as last read from the API."""

    __tablename__ = "payments"
    # Payments listed most recently updated first (migration d3a468b82244).
    __table_args__ = (
        Index("ix_payments_updated_at", "updated_at"),
        # A payment id is unique within its account (migration d1a7c3e9f5b2).
        db.UniqueConstraint("account_id", "mp_payment_id", name="uq_payments_account_payment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (accounts.py; migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    mp_payment_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    status_detail: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    payer_email: Mapped[str | None] = mapped_column(String(320), index=True)
    external_reference: Mapped[str | None] = mapped_column(String(255), index=True)
    # MercadoPago's own last-update time: an older read never overwrites a newer one.
    mp_date_last_updated: Mapped[datetime | None] = mapped_column(DateTime)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ghl_contact_id: Mapped[str | None] = mapped_column(String(64))
    # The tags this payment put on its contact (GHL_TAG_MODE=replace: its current status's).
    tags_applied: Mapped[list[str] | None] = mapped_column(JSON)
    # The `mp_date_last_updated` of the data last synced to the CRM: an older read never
    # moves the contact's tags or fields back (migration f4b8c2d61a07).
    crm_synced_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    events: Mapped[list[WebhookEvent]] = relationship(back_populates="payment")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "mp_payment_id": self.mp_payment_id,
            "status": self.status,
            "status_detail": self.status_detail,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "payer_email": self.payer_email,
            "external_reference": self.external_reference,
            "mp_date_last_updated": isoformat(self.mp_date_last_updated),
            "ghl_contact_id": self.ghl_contact_id,
            "tags_applied": self.tags_applied or [],
            "crm_synced_at": isoformat(self.crm_synced_at),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class WebhookEvent(db.Model):
    """One notification as received: stored before anything else happens to it."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        # The worker's and reconciler's question: what is due now?
        Index("ix_webhook_events_status_next_retry_at", "status", "next_retry_at"),
        Index("ix_webhook_events_type_received_at", "type", "received_at"),
        # Operator listings by status in received order; oldest pending (migration d3a468b82244).
        Index("ix_webhook_events_status_received_at", "status", "received_at"),
        # Listings filtered by status and type, and their capped count (migration e7c1f2a90b13).
        Index("ix_webhook_events_status_type_received_at", "status", "type", "received_at"),
        # The retention purge's next batch: finished, not purged, oldest first (a5c8e1f37d42).
        Index(
            "ix_webhook_events_purge_due",
            "processed_at",
            sqlite_where=text(PURGE_DUE),
            postgresql_where=text(PURGE_DUE),
        ),
        # The notification's id is unique within its account: what makes redeliveries
        # harmless (migration d1a7c3e9f5b2).
        db.UniqueConstraint("account_id", "webhook_id", name="uq_webhook_events_account_webhook"),
        # One account's listings, by status, newest first.
        Index(
            "ix_webhook_events_account_status_received_at", "account_id", "status", "received_at"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (accounts.py; migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    webhook_id: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))  # "webhook" or "ipn"
    type: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[Any | None] = mapped_column(JSON)
    raw_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    query: Mapped[dict[str, str] | None] = mapped_column(JSON)

    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts not counted against the retry budget: those made before the last manual
    # replay (a replay gives a fresh budget), and `busy` ones (another worker held a lock).
    attempts_at_replay: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_retry_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # When retention or an erasure dropped raw_body, payload, headers, query and tracebacks.
    purged_at: Mapped[datetime | None] = mapped_column(DateTime)

    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    payment: Mapped[Payment | None] = relationship(back_populates="events")
    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="event", order_by="WebhookAttempt.number", cascade="all, delete-orphan"
    )

    @property
    def attempts_this_round(self) -> int:
        """Attempts counted against the retry budget (those since the last replay)."""
        return self.attempts - self.attempts_at_replay

    def to_dict(self, *, with_attempts: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "account_id": self.account_id,
            "webhook_id": self.webhook_id,
            "source": self.source,
            "type": self.type,
            "action": self.action,
            "resource_id": self.resource_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "next_retry_at": isoformat(self.next_retry_at),
            "received_at": isoformat(self.received_at),
            "processed_at": isoformat(self.processed_at),
            "updated_at": isoformat(self.updated_at),
            "purged_at": isoformat(self.purged_at),
            "payment_id": self.payment.mp_payment_id if self.payment else None,
        }
        if with_attempts:
            data["attempt_log"] = [attempt.to_dict() for attempt in self.attempt_log]
        return data


class Subscription(db.Model):
    """A MercadoPago subscription (preapproval), as last read (migration a5c9e2f41b07)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        db.UniqueConstraint(
            "account_id", "mp_preapproval_id", name="uq_subscriptions_account_preapproval"
        ),
        Index("ix_subscriptions_payer_email", "payer_email"),
        Index("ix_subscriptions_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (accounts.py; migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    mp_preapproval_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    payer_email: Mapped[str | None] = mapped_column(String(320))
    preapproval_plan_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(255))
    external_reference: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    frequency: Mapped[int | None] = mapped_column(Integer)
    frequency_type: Mapped[str | None] = mapped_column(String(16))
    next_payment_date: Mapped[datetime | None] = mapped_column(DateTime)
    # MercadoPago's `last_modified`: an older read never overwrites a newer one.
    mp_last_modified: Mapped[datetime | None] = mapped_column(DateTime)
    # Every e-mail masked at rest with PII_MASKING (the payer_email column keeps it).
    raw: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON)
    ghl_contact_id: Mapped[str | None] = mapped_column(String(64))
    tags_applied: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "mp_preapproval_id": self.mp_preapproval_id,
            "status": self.status,
            "payer_email": self.payer_email,
            "preapproval_plan_id": self.preapproval_plan_id,
            "reason": self.reason,
            "external_reference": self.external_reference,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "frequency": self.frequency,
            "frequency_type": self.frequency_type,
            "next_payment_date": isoformat(self.next_payment_date),
            "ghl_contact_id": self.ghl_contact_id,
            "tags_applied": self.tags_applied or [],
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class MpAlert(db.Model):
    """A fraud alert (`stop_delivery_op_wh`) or a claim (`topic_claims_integration_wh`)."""

    __tablename__ = "mp_alerts"
    __table_args__ = (
        db.UniqueConstraint(
            "account_id", "kind", "mp_resource_id", name="uq_mp_alerts_account_kind_resource"
        ),
    )

    FRAUD_ALERT = "fraud_alert"
    CLAIM = "claim"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account it belongs to (accounts.py; migration d1a7c3e9f5b2).
    account_id: Mapped[int] = account_column()
    kind: Mapped[str] = mapped_column(String(16))
    # The fraud alert's payment id; the claim's id.
    mp_resource_id: Mapped[str] = mapped_column(String(64))
    mp_payment_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    payer_email: Mapped[str | None] = mapped_column(String(320))
    # Every e-mail masked at rest with PII_MASKING (the payer_email column keeps it).
    raw: Mapped[dict[str, Any] | None] = mapped_column(MaskedJSON)
    ghl_contact_id: Mapped[str | None] = mapped_column(String(64))
    # When its one alert message was sent (or tried): never twice across retries.
    alerted_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def merchant_order_id(self) -> str | None:
        """A fraud alert's merchant order (`data.merchant_order` of its notification, kept in
        `raw`), when it looks like an id; None otherwise and for claims."""
        data = (self.raw or {}).get("data") if self.kind == self.FRAUD_ALERT else None
        value = data.get("merchant_order") if isinstance(data, dict) else None
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return str(value) if RESOURCE_ID_PATTERN.fullmatch(str(value)) else None
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "kind": self.kind,
            "mp_resource_id": self.mp_resource_id,
            "mp_payment_id": self.mp_payment_id,
            "merchant_order_id": self.merchant_order_id,
            "status": self.status,
            "detail": self.detail,
            "payer_email": self.payer_email,
            "ghl_contact_id": self.ghl_contact_id,
            "alerted_at": isoformat(self.alerted_at),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


class WebhookAttempt(db.Model):
    """One processing attempt of an event: the audit trail."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16), default=AttemptOutcome.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool | None] = mapped_column(db.Boolean)
    worker: Mapped[str | None] = mapped_column(String(255))

    event: Mapped[WebhookEvent] = relationship(back_populates="attempt_log")

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "error": self.error,
            "retryable": self.retryable,
            "worker": self.worker,
        }


# The other models, registered with the same metadata (drop_all, the admin); the
# operators' records are importable from here as before.
from . import accounts, resources  # noqa: E402,F401
from .operator_records import Erasure, ProcessingPause, ProcessingPauseLog  # noqa: E402,F401
