"""What operators did: erasures of personal data, and pauses of processing (with their log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import BigId
from .timeutil import isoformat, utcnow


class Erasure(db.Model):
    """That a data subject's personal data was erased: when, how, how much; never what.

    `subject_hash` is a keyed hash (HMAC-SHA256 with the app's SECRET_KEY) of the
    normalised e-mail, kept only so that a repeated request for the same person is
    recognised ("already erased on …") without storing the address itself.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    surface: Mapped[str] = mapped_column(String(16))  # "cli" or "admin"
    requested_by: Mapped[str | None] = mapped_column(String(255))
    subject_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # The account the erasure covered; None: every account.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    payments: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requested_at": isoformat(self.requested_at),
            "surface": self.surface,
            "requested_by": self.requested_by,
            "payments": self.payments,
            "events": self.events,
            "attempts": self.attempts,
        }


class ProcessingPause(db.Model):
    """A stage (`all`, `mercadopago`, `gohighlevel`) an operator or a breaker paused.

    One row per paused stage: the primary key makes a second pause of the same stage
    a no-op (the first one's who/when/why stay); resuming deletes the row (see pausing.py).
    """

    __tablename__ = "processing_pauses"

    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    paused_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(500))
    paused_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ProcessingPauseLog(db.Model):
    """The history of pauses and resumes, newest last."""

    __tablename__ = "processing_pause_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # pause, resume
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "at": isoformat(self.at),
        }
