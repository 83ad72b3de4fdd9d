"""Admin: pause and resume processing, the banner shown on every page while paused.

Routes on the admin blueprint (its login and CSRF check apply), kept apart from
admin.py; imported at the end of it.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..pausing import MAX_REASON, STAGES, PauseError, pause, paused_stages, resume, status
from .admin import bp


def admin_actor() -> str:
    auth = request.authorization
    return f"admin ({auth.username})" if auth is not None and auth.username else "admin"


@bp.context_processor
def processing_banner() -> dict[str, Any]:
    """The paused stages, for the banner of every admin page (templates/admin/base.html)."""
    try:
        paused = paused_stages(fresh=True)
    except SQLAlchemyError:  # the page says what failed; the banner must not hide it
        db.session.rollback()
        paused = {}
    return {"paused_stages": paused, "pause_stages": STAGES}


@bp.get("/processing")
def processing() -> ResponseReturnValue:
    """Paused stages, circuit breakers, the pause form and the history."""
    return render_template("admin/processing.html", data=status(), max_reason=MAX_REASON)


@bp.post("/processing/pause")
def pause_processing() -> ResponseReturnValue:
    try:
        changed = pause(request.form.get("stage"), request.form.get("reason"), admin_actor())
    except PauseError as exc:
        flash(f"Not paused: {exc}.", "error")
    else:
        stage = request.form.get("stage") or "all"
        if changed:
            flash(f"Paused stage {stage}: events are stored and wait pending.", "warning")
        else:
            flash(f"Stage {stage} was already paused.", "info")
    return redirect(url_for(".processing"))


@bp.post("/processing/resume")
def resume_processing() -> ResponseReturnValue:
    try:
        report = resume(request.form.get("stage"), admin_actor(), request.form.get("account"))
    except PauseError as exc:
        flash(f"Not resumed: {exc}.", "error")
        return redirect(url_for(".processing"))
    if report.changed:
        what = ", ".join(report.resumed + [f"{b} breaker" for b in report.breakers_reset])
        note = f" ({report.redis_error}: the rest follow)" if report.redis_error else ""
        flash(f"Resumed {what}; {report.enqueued} waiting event(s) queued{note}.", "success")
    else:
        flash(f"Stage {report.stage} was not paused.", "info")
    return redirect(url_for(".processing"))
