"""Pause and resume processing, as a whole or per upstream stage, from the database.

A pause is a `processing_pauses` row (one per stage: `all`, `mercadopago`,
`gohighlevel`), so it survives a Redis flush and every process sees it; workers
keep a copy for PAUSE_CACHE_SECONDS. Every pause and resume is also written to
`processing_pause_log` with who, when and why.

While a stage an event needs is paused, its attempts do not start (see holds.py):
notifications are still stored and answered, events stay `pending` with their
attempt count and retry budget untouched. An attempt that was already running
when the pause began runs to its end (and so does one a worker starts within
PAUSE_CACHE_SECONDS of the pause, on its cached copy). Resuming enqueues the due
pending events it released in received order, in batches.

Pauses hold every account. Resuming one account (`account=<slug>`) closes only that
account's circuit breakers (a wrong token of another account opens its own breaker,
not a pause) and enqueues only its events; the default account's resume is the
deployment's, as before accounts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from redis import RedisError
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError

from . import queueing
from .accounts import DEFAULT_SLUG, AccountSettings, by_slug
from .extensions import db
from .filters import of_account
from .models import EventStatus, ProcessingPause, ProcessingPauseLog, WebhookEvent
from .timeutil import isoformat, utcnow

logger = logging.getLogger(__name__)

ALL = "all"
MERCADOPAGO = "mercadopago"
GOHIGHLEVEL = "gohighlevel"
UPSTREAMS = (MERCADOPAGO, GOHIGHLEVEL)
STAGES = (ALL, *UPSTREAMS)
MAX_REASON = 500
MAX_ACTOR = 255
HISTORY_SHOWN = 20
RESUME_BATCH = 500
_CACHE = "webhooks_pause_cache"


class PauseError(ValueError):
    """A pause or resume request cannot be applied (bad stage, missing reason)."""


def stages_needed(event_type: str) -> tuple[str, ...]:
    """The upstream stages an event's pipeline may call: every handled topic reads
    MercadoPago first and may then call GoHighLevel; other types are only marked `ignored`."""
    from .handlers import handler_for  # the registry imports the CRM, which imports this

    return UPSTREAMS if handler_for(event_type) is not None else ()


def check_stage(stage: str | None) -> str:
    """The stage named, `all` when none; PauseError for anything else."""
    if stage is None or stage == "":
        return ALL
    name = stage.strip().lower() if isinstance(stage, str) else None
    if name not in STAGES:
        raise PauseError(f"stage: must be one of {', '.join(STAGES)}, got {stage!r}")
    return name


def check_reason(reason: Any) -> str:
    """A pause's free-text reason: required, at most MAX_REASON characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise PauseError("reason: say why processing is paused (free text)")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise PauseError(f"reason: at most {MAX_REASON} characters, got {len(reason)}")
    return reason


def paused_stages(*, fresh: bool = False) -> dict[str, dict[str, Any]]:
    """The paused stages with who/when/why, read at most every PAUSE_CACHE_SECONDS per app
    (`fresh` reads the database now)."""
    extensions = current_app.extensions
    cached = extensions.get(_CACHE)
    if not fresh and cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    rows = db.session.scalars(select(ProcessingPause)).all()
    paused = {
        row.stage: {
            "paused_by": row.paused_by,
            "reason": row.reason,
            "paused_at": isoformat(row.paused_at),
        }
        for row in rows
    }
    extensions[_CACHE] = (time.monotonic() + current_app.config["PAUSE_CACHE_SECONDS"], paused)
    return paused


def _forget_cache() -> None:
    current_app.extensions.pop(_CACHE, None)


def holding_stage(event_type: str, *, fresh: bool = False) -> str | None:
    """The paused stage that holds events of this type (`all` first), None if none does."""
    paused = paused_stages(fresh=fresh)
    if not paused:
        return None
    if ALL in paused:
        return ALL
    for stage in stages_needed(event_type):
        if stage in paused:
            return stage
    return None


def pause(stage: str | None, reason: Any, actor: str) -> bool:
    """Pause a stage; False when it was paused already (the first pause's record stays)."""
    stage, reason = check_stage(stage), check_reason(reason)
    actor = (actor or "unknown")[:MAX_ACTOR]
    if db.session.get(ProcessingPause, stage) is not None:
        return False
    now = utcnow()
    db.session.add(ProcessingPause(stage=stage, paused_by=actor, reason=reason, paused_at=now))
    db.session.add(
        ProcessingPauseLog(stage=stage, action="pause", actor=actor, reason=reason, at=now)
    )
    try:
        db.session.commit()
    except IntegrityError:  # paused by someone else at the same moment: theirs stands
        db.session.rollback()
        return False
    finally:
        _forget_cache()
    logger.warning("processing paused: stage %s by %s: %s", stage, actor, reason)
    return True


@dataclass
class ResumeReport:
    """What a resume did."""

    stage: str
    account: str | None = None  # the slug of the account resumed; None: the deployment
    resumed: list[str] = field(default_factory=list)
    breakers_reset: list[str] = field(default_factory=list)
    enqueued: int = 0
    redis_error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.resumed or self.breakers_reset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "account": self.account,
            "changed": self.changed,
            "resumed": self.resumed,
            "breakers_reset": self.breakers_reset,
            "enqueued": self.enqueued,
            "redis_error": self.redis_error,
        }


def check_account(slug: Any) -> AccountSettings | None:
    """The account a resume is for: None for none given (or `default`: the deployment's
    own), else the account with that slug; PauseError if there is none."""
    if slug is None or slug == "" or slug == DEFAULT_SLUG:
        return None
    account = by_slug(slug) if isinstance(slug, str) else None
    if account is None:
        raise PauseError(f"account: no account with the slug {slug!r}")
    return account


def resume(stage: str | None, actor: str, account: str | None = None) -> ResumeReport:
    """Lift a pause (`all`: every pause) and close its upstreams' breakers; then enqueue
    the due pending events no pause holds any more, in received order.

    With `account` (a slug other than `default`): close only that account's breakers of
    the stage and enqueue only its events; the pauses, which hold every account, stay.
    """
    from . import breaker  # breaker.py pauses a stage itself: imports this module

    stage = check_stage(stage)
    settings = check_account(account)
    actor = (actor or "unknown")[:MAX_ACTOR]
    upstreams = UPSTREAMS if stage == ALL else (stage,)
    if settings is not None:
        report = ResumeReport(stage, account=settings.slug)
        report.breakers_reset = [
            name for name in upstreams if breaker.reset(name, actor, account=settings)
        ]
        report.enqueued, report.redis_error = drain(account_id=settings.id)
        return report
    report = ResumeReport(stage)
    targets = STAGES if stage == ALL else (stage,)
    now = utcnow()
    removed = db.session.execute(
        delete(ProcessingPause)
        .where(ProcessingPause.stage.in_(targets))
        .returning(ProcessingPause.stage)
    ).scalars()
    report.resumed = sorted(removed)
    for resumed in report.resumed:
        db.session.add(ProcessingPauseLog(stage=resumed, action="resume", actor=actor, at=now))
    db.session.commit()
    _forget_cache()
    if report.resumed:
        logger.warning("processing resumed: %s by %s", ", ".join(report.resumed), actor)
    report.breakers_reset = [name for name in upstreams if breaker.reset(name, actor)]
    report.enqueued, report.redis_error = drain()
    return report


def drain(batch: int = RESUME_BATCH, account_id: int | None = None) -> tuple[int, str | None]:
    """Enqueue due pending events that no pause holds (of one account, if given), oldest
    received first, a batch per Redis round trip, each onto its account's queue. Returns
    how many were enqueued and the Redis error that stopped it."""
    paused = paused_stages(fresh=True)
    if ALL in paused:
        return 0, None
    from .handlers import TOPICS  # the registry imports the CRM, which imports this

    # A stage still paused holds every handled topic (each reads MercadoPago, then GHL).
    held_types = set(TOPICS) if any(stage in paused for stage in UPSTREAMS) else set()
    now = utcnow()
    query = (
        select(
            WebhookEvent.id,
            WebhookEvent.account_id,
            WebhookEvent.attempts,
            WebhookEvent.received_at,
            WebhookEvent.type,
        )
        .where(
            WebhookEvent.status == EventStatus.PENDING,
            or_(WebhookEvent.next_retry_at.is_(None), WebhookEvent.next_retry_at <= now),
        )
        .order_by(WebhookEvent.received_at, WebhookEvent.id)
        .limit(batch)
    )
    if held_types:
        query = query.where(WebhookEvent.type.not_in(held_types))
    query = of_account(query, WebhookEvent, account_id)
    enqueued = 0
    after: tuple[Any, int] | None = None
    while True:
        page = query
        if after is not None:
            page = query.where(
                or_(
                    WebhookEvent.received_at > after[0],
                    and_(WebhookEvent.received_at == after[0], WebhookEvent.id > after[1]),
                )
            )
        rows = db.session.execute(page).all()
        if not rows:
            return enqueued, None
        try:
            queueing.enqueue_events(
                [(row.id, row.attempts + 1) for row in rows],
                types={row.id: row.type for row in rows},  # fraud alerts and claims first
                accounts={row.id: row.account_id for row in rows},
            )
        except RedisError as exc:  # they stay pending, due: the reconciler enqueues them
            logger.warning("resume: Redis unavailable after %d event(s): %s", enqueued, exc)
            return enqueued, str(exc)
        enqueued += len(rows)
        after = (rows[-1].received_at, rows[-1].id)


def history(limit: int = HISTORY_SHOWN) -> list[dict[str, Any]]:
    """The latest pauses and resumes, newest first."""
    rows = db.session.scalars(
        select(ProcessingPauseLog)
        .order_by(ProcessingPauseLog.at.desc(), ProcessingPauseLog.id.desc())
        .limit(limit)
    )
    return [row.to_dict() for row in rows]


def status() -> dict[str, Any]:
    """Everything `GET /api/processing`, the admin and `flask webhooks status` show."""
    from . import breaker

    paused = paused_stages(fresh=True)
    return {
        "paused": bool(paused),
        "stages": {stage: {"paused": stage in paused, **paused.get(stage, {})} for stage in STAGES},
        "breakers": breaker.states_for_display(),
        "history": history(),
    }
