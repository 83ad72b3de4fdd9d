"""`/admin`: server-rendered pages for operators — what came in, what failed, retry it.

Behind HTTP Basic (ADMIN_USERNAME / ADMIN_PASSWORD); every form that changes
state carries a CSRF token (Flask-WTF). Listings page by keyset and count at
most pagination.COUNT_CAP rows, so they stay fast on a million events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict

from ..accounts import DEFAULT_ACCOUNT_ID
from ..auth import UNSAFE_METHODS, ensure_secret_key, require_admin
from ..extensions import csrf
from ..filters import (
    EVENT_FILTER_PARAMS,
    FilterError,
    parse_account,
    parse_bool,
    parse_event_filter,
    parse_int,
    parse_payment_filter,
)
from ..jobs import event_jobs
from ..lookups import find_event, find_payment, payment_events
from ..models import EventStatus, Payment, WebhookEvent
from ..pagination import capped_count, keyset_page
from ..replays import ReplayRefused, RetryReport, replay_event, retry_ids, retry_matching

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZES = (25, 50, 100)
# One click re-queues at most this many; the message says to click again for the rest.
BULK_RETRY_MAX = 1000
BADGES = {status: f"badge-{status}" for status in EventStatus.ALL}
T = TypeVar("T")


def init_app(app: Flask) -> None:
    """Register the admin, with CSRF protection for its forms only."""
    ensure_secret_key(app)
    # Checked in this blueprint's before_request, not app-wide: the webhook
    # endpoint and the JSON API take no forms, and new JSON routes stay unaffected.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    app.register_blueprint(bp)


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    """Basic auth on every page; a CSRF token on every state change."""
    denied = require_admin()
    if denied is not None:
        return denied
    if request.method in UNSAFE_METHODS:
        csrf.protect()
    return None


@bp.after_request
def harden(response: Response) -> Response:
    """No framing (clickjacking the retry buttons), no caching of operator data."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    message = (
        f"The form could not be accepted ({exc.description}). "
        "Reload the page and try again; nothing was changed."
    )
    return render_template("admin/error.html", message=message), 400


@bp.app_template_filter("admin_time")
def format_time(value: datetime | None) -> str:
    """Naive UTC datetimes as `2026-11-29 10:00:00`."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


@bp.app_template_filter("admin_duration")
def format_duration(seconds: float | None) -> str:
    """Seconds as `850 ms`, `12.3 s`, `4.5 min`, `2.1 h`."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@bp.app_template_filter("admin_json")
def format_json(value: Any) -> str:
    """Stored JSON, indented and readable (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@bp.context_processor
def admin_context() -> dict[str, Any]:
    return {"statuses": EventStatus.ALL, "badges": BADGES}


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for(".events"))


@bp.get("/events")
def events() -> ResponseReturnValue:
    """Events, newest first; filters, keyset pages, retry forms."""
    args = request.args
    try:
        event_filter = parse_event_filter(args)
        limit = _page_size(args)
        descending = args.get("order", "desc") != "asc"
        query = event_filter.query().options(selectinload(WebhookEvent.payment))
        total, exact = capped_count(query)
        page = keyset_page(
            query,
            WebhookEvent.received_at,
            WebhookEvent.id,
            limit=limit,
            after=args.get("after") or None,
            before=args.get("before") or None,
            descending=descending,
        )
    except FilterError as exc:
        return render_template("admin/events.html", error=str(exc), args=args, page=None), 400
    base = {**event_filter.args, "order": "desc" if descending else "asc", "limit": limit}
    return render_template(
        "admin/events.html",
        error=None,
        args=args,
        page=page,
        total=total,
        exact=exact,
        filter_args=event_filter.args,
        base=base,
        descending=descending,
        page_sizes=PAGE_SIZES,
    )


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> ResponseReturnValue:
    """One event: everything stored, each attempt, its payment, its jobs in Redis."""
    found = find_event(event_id)
    if found is None:
        abort(404)
    return render_template("admin/event.html", event=found, rq=event_jobs(found))


@bp.post("/events/<int:event_id>/retry")
def retry_event(event_id: int) -> ResponseReturnValue:
    """Re-queue one event; a `success` one only when `force` is ticked."""
    found = find_event(event_id)
    if found is None:
        abort(404)
    force = _force()
    try:
        queued = replay_event(found, force=force)
    except ReplayRefused as exc:
        flash(f"Not retried: {exc}.", "error")
    else:
        note = "" if queued else " (Redis unavailable: left pending, it will be picked up)"
        flash(f"Re-queued 1 event: event {event_id}{note}.", "success")
    return redirect(url_for(".event", event_id=event_id))


@bp.post("/events/retry-selected")
def retry_selected() -> ResponseReturnValue:
    """Re-queue the events ticked in the list."""
    try:
        ids = [int(value) for value in request.form.getlist("ids")]
    except ValueError:
        abort(400, "event ids must be whole numbers")
    if not ids:
        flash("No event selected: tick the events to retry first.", "error")
        return redirect(_back_to_list())
    try:
        # A list narrowed to one account retries that account's events only.
        account_id = parse_account(request.form.get("account") or None)
    except FilterError as exc:
        flash(f"Not retried: {exc}", "error")
    else:
        _flash_report(retry_ids(ids, force=_force(), account_id=account_id))
    return redirect(_back_to_list())


@bp.post("/events/retry-failed")
def retry_failed() -> ResponseReturnValue:
    """Re-queue every failed event matching the list's current filter."""
    try:
        event_filter = parse_event_filter(_filter_form())
    except FilterError as exc:
        flash(f"Not retried: {exc}", "error")
        return redirect(_back_to_list())
    failed = event_filter.restricted_to(EventStatus.FAILED)
    if failed is None:
        _flash_report(RetryReport())
    else:
        _flash_report(retry_matching(failed, force=_force(), limit=BULK_RETRY_MAX))
    return redirect(_back_to_list())


@bp.get("/payments")
def payments() -> ResponseReturnValue:
    """Payments, most recently updated first."""
    args = request.args
    try:
        payment_filter = parse_payment_filter(args)
        limit = _page_size(args)
        page = keyset_page(
            payment_filter.query(),
            Payment.updated_at,
            Payment.id,
            limit=limit,
            after=args.get("after") or None,
            before=args.get("before") or None,
        )
    except FilterError as exc:
        return render_template("admin/payments.html", error=str(exc), args=args, page=None), 400
    return render_template(
        "admin/payments.html",
        error=None,
        args=args,
        page=page,
        base={**payment_filter.args, "limit": limit},
        page_sizes=PAGE_SIZES,
    )


@bp.get("/payments/<mp_id>")
def payment(mp_id: str) -> ResponseReturnValue:
    """One payment: status, amount, payer, GoHighLevel contact and tags, its events."""
    found = find_in_account(find_payment, mp_id)
    if found is None:
        abort(404)
    return render_template("admin/payment.html", payment=found, events=payment_events(found))


def find_in_account(finder: Callable[[str, int | None], T | None], mp_id: str) -> T | None:
    """A resource page's row: of `?account=<slug>` (a MercadoPago id is unique within an
    account only); without it the default account's, else any account's (the links of the
    default account's rows carry no account, as its webhook URL carries none)."""
    try:
        account_id = parse_account(request.args.get("account") or None)
    except FilterError as exc:
        abort(404, str(exc))
    if account_id is not None:
        return finder(mp_id, account_id)
    return finder(mp_id, DEFAULT_ACCOUNT_ID) or finder(mp_id, None)


def _page_size(args: MultiDict[str, str]) -> int:
    return parse_int("limit", args.get("limit"), default=50, minimum=1, maximum=max(PAGE_SIZES))


def _force() -> bool:
    try:
        return parse_bool("force", request.form.get("force"))
    except FilterError:
        return False


def _filter_form() -> dict[str, str]:
    """The list's filter, sent along with a retry form as hidden fields."""
    return {key: request.form[key] for key in EVENT_FILTER_PARAMS if request.form.get(key)}


def _back_to_list() -> str:
    """The events list with the filter and order the form came from (never another site)."""
    args: dict[str, Any] = _filter_form()
    if request.form.get("order") in ("asc", "desc"):
        args["order"] = request.form["order"]
    return url_for(".events", **args)


def _flash_report(report: RetryReport) -> None:
    if report.refused:
        category = "warning" if report.requeued else "error"
    else:
        category = "success" if report.requeued else "info"
    text = report.summary()
    flash(f"{text[0].upper()}{text[1:]}.", category)
    for event_id, reason in list(report.refused.items())[:10]:
        flash(f"Event {event_id} refused: {reason}.", "error")


@bp.route("/erasure", methods=["GET", "POST"])
def erasure() -> ResponseReturnValue:
    """Erase one payer's personal data (webhooks_app/erasure.py); list the erasures done."""
    from ..erasure import ErasureError, forget, recent_erasures

    if request.method == "POST":
        if not request.form.get("confirm"):
            flash("Not erased: tick the confirmation first.", "error")
            return redirect(url_for(".erasure"))
        try:
            report = forget(
                request.form.get("email", ""),
                surface="admin",
                requested_by=request.authorization.username if request.authorization else None,
            )
        except ErasureError as exc:
            flash(f"Not erased: {exc}.", "error")
        else:
            text = report.summary()
            flash(f"{text[0].upper()}{text[1:]}. Erase the contact in GoHighLevel too.", "success")
        return redirect(url_for(".erasure"))
    return render_template("admin/erasure.html", erasures=recent_erasures())


# Pages of pause/resume, of the other resources and of accounts, on this blueprint (their
# own modules).
from . import admin_accounts, admin_processing, admin_resources, admin_stats  # noqa: E402, F401
