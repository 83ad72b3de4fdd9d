"""`/api`: JSON views and retries of events and payments, behind a bearer token.

`Authorization: Bearer <API_TOKEN>` only. The admin's Basic credentials are not
accepted here: a browser caches them and would attach them to a request that any
web page makes, so that page could replay events (cross-site request forgery).
A bearer token is never sent by a browser on its own. On top of that, a request
carrying a foreign `Origin` is refused (403), and a state-changing call must say
`Content-Type: application/json` when it has a body (415 otherwise), which an HTML form cannot send
and a cross-site script cannot send without a CORS preflight we never answer.
Bodies are parsed by json_input (nesting capped). The OpenAPI document at
`/api/openapi.json` is public (it holds no data).

Accounts: the global API_TOKEN sees every account (`?account=<slug>` narrows a view to
one); an account's token (`flask webhooks accounts token SLUG`) sees that account only.
Who is calling and which account they see is decided once, in `require_token`, and kept
in `g.api_account_id` (`api_account_id()`), which every view passes to its queries.
A view serves an account's token only if it is marked `@account_scoped`: one that is
not (pause/resume, accounts management, a view someone forgot to scope) answers 403 to
it. Another account's event, payment… answers 404 exactly as a missing one, so a token
learns nothing about other accounts; `?account=<another slug>` with it answers 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import selectinload

from ..auth import UNSAFE_METHODS, ApiCaller, api_caller, foreign_origin
from ..extensions import db
from ..filters import (
    FilterError,
    parse_account,
    parse_bool,
    parse_event_filter,
    parse_int,
    parse_payment_filter,
)
from ..json_input import JsonInputError, parse_json
from ..lookups import event_detail, find_event, find_payment, payment_events
from ..models import EventStatus, Payment, WebhookEvent
from ..openapi import openapi_document
from ..pagination import capped_count, keyset_page
from ..replays import BULK_RETRY_MAX, ReplayRefused, replay_event, retry_matching
from ..stats import dashboard

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_STATS_HOURS = 168
PUBLIC_ENDPOINTS = {"api.openapi"}


View = TypeVar("View", bound=Callable[..., Any])


class BadRequest(ValueError):
    """A query parameter or body has a value we cannot use."""


class OtherAccount(PermissionError):
    """An account's token asked for another account, or for a global operation."""


def account_scoped(view: View) -> View:
    """Mark a view that an account's token may call: it scopes every query by
    `api_account_id()`. Views without the mark are the global token's only (fail closed)."""
    view.account_scoped = True  # type: ignore[attr-defined]
    return view


def api_account_id() -> int | None:
    """The account this request sees: an account token's own, or the global token's
    `?account=` (None: every account). Set by `require_token` before any view runs."""
    return g.api_account_id


def narrowed_account(slug: Any) -> int | None:
    """The account the caller asks for with `slug` (`?account=`, a body's `account`): the
    global token may name any account (None: every account); an account's token its own
    only (OtherAccount, 403, for any other slug, existing or not: nothing leaks)."""
    caller: ApiCaller = g.api_caller
    if slug is not None and not isinstance(slug, str):
        raise FilterError("account", "must be a string")
    slug = (slug or "").strip() or None
    if caller.is_global:
        return parse_account(slug)
    if slug not in (None, caller.account_slug):
        raise OtherAccount(f"this token sees the account {caller.account_slug!r} only")
    return caller.account_id


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    """Every API call needs a bearer token; state changes need JSON and no foreign Origin;
    an account's token is held to its account (`g.api_account_id`)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    # Constant-time compare of the global token; an account's by its hash (auth.api_caller).
    caller = api_caller(request, current_app.config)
    if caller is None and not current_app.config.get("API_TOKEN"):
        return jsonify(
            {"error": "the API is disabled: set the API_TOKEN environment variable to enable it"}
        ), 503
    if caller is None:
        response = jsonify({"error": "missing or invalid API token (Authorization: Bearer …)"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response, 401
    if foreign_origin():
        logger.warning(
            "refused an API %s to %s from origin %s",
            request.method,
            request.path,
            request.headers.get("Origin"),
        )
        return jsonify({"error": "cross-origin requests are refused"}), 403
    if request.method in UNSAFE_METHODS and not _json_typed():
        return jsonify({"error": "send the body as JSON, with Content-Type: application/json"}), 415
    return _enter_scope(caller)


def _enter_scope(caller: ApiCaller) -> ResponseReturnValue | None:
    """Keep who is calling and the account they see in `g`; refuse what is not theirs."""
    g.api_caller = caller
    g.api_account_id = None
    view = current_app.view_functions.get(request.endpoint or "")
    scoped = getattr(view, "account_scoped", False)
    if not caller.is_global:
        if not caller.account_enabled:
            return jsonify({"error": f"the account {caller.account_slug!r} is disabled"}), 403
        if not scoped:
            return jsonify(
                {"error": "an account's token cannot do this: it needs the global API_TOKEN"}
            ), 403
    if scoped:
        g.api_account_id = narrowed_account(request.args.get("account"))
    return None


@bp.errorhandler(OtherAccount)
def other_account(exc: OtherAccount) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 403


@bp.errorhandler(BadRequest)
@bp.errorhandler(FilterError)
def bad_request(exc: ValueError) -> ResponseReturnValue:
    return jsonify({"error": str(exc)}), 400


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document())


@bp.get("/webhook-events")
@account_scoped
def list_events() -> ResponseReturnValue:
    """Events, newest first (or `order=asc`); filters and a cursor to the next page."""
    args = request.args
    event_filter = replace(parse_event_filter(args), account_id=api_account_id())
    limit = request_limit()
    descending = _order(args.get("order"))
    query = event_filter.query().options(selectinload(WebhookEvent.payment))
    total, exact = capped_count(query)
    page = keyset_page(
        query,
        WebhookEvent.received_at,
        WebhookEvent.id,
        limit=limit,
        after=args.get("cursor") or None,
        after_param="cursor",
        descending=descending,
    )
    return jsonify(
        {
            "events": [event.to_dict() for event in page.items],
            "total": total,
            "total_exact": exact,
            "next_cursor": page.next_cursor,
        }
    )


@bp.get("/webhook-events/<int:event_id>")
@account_scoped
def get_event(event_id: int) -> ResponseReturnValue:
    """One event with its payload, headers, every attempt and its jobs in Redis."""
    event = _event_or_404(event_id)
    return jsonify(event_detail(event))


@bp.post("/webhook-events/<int:event_id>/retry")
@account_scoped
def retry_event(event_id: int) -> ResponseReturnValue:
    """Re-queue one event with a fresh retry budget; a `success` one only with `force`."""
    body = _json_body()
    force = parse_bool("force", body.get("force", request.args.get("force")))
    event = _event_or_404(event_id)
    try:
        queued = replay_event(event, force=force)
    except ReplayRefused as exc:
        return jsonify({"error": str(exc)}), 409
    db.session.refresh(event)
    return jsonify({"requeued": 1, "queued": queued, "event": event.to_dict()})


@bp.post("/webhook-events/retry")
@account_scoped
def retry_events() -> ResponseReturnValue:
    """Re-queue every event matching a filter (status defaults to failed); returns the count.
    Only the caller's account's events (a body's `account` narrows the global token's)."""
    body = _json_body()
    filters = {key: body.get(key) for key in ("status", "type", "since", "until", "q")}
    if filters["status"] is None:
        filters["status"] = EventStatus.FAILED
    account_id = narrowed_account(body["account"]) if "account" in body else api_account_id()
    event_filter = replace(parse_event_filter(filters), account_id=account_id)
    force = parse_bool("force", body.get("force"))
    dry_run = parse_bool("dry_run", body.get("dry_run"))
    limit = parse_int(
        "limit", body.get("limit"), default=BULK_RETRY_MAX, minimum=1, maximum=BULK_RETRY_MAX
    )
    report = retry_matching(event_filter, force=force, limit=limit, dry_run=dry_run)
    return jsonify(report.to_dict())


def request_limit() -> int:
    """The request's `limit` (rows per answer): DEFAULT_LIMIT, at most MAX_LIMIT; 400 if bad."""
    return parse_int(
        "limit", request.args.get("limit"), default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT
    )


def updated_first_page(name: str, query: Any, model: Any) -> ResponseReturnValue:
    """`{name: [...], "next_cursor": C}`: one page of `query`'s rows, most recently updated
    first (keyset on `updated_at`, `id`), of the request's `limit` from its `cursor`."""
    args = request.args
    limit = request_limit()
    page = keyset_page(
        query,
        model.updated_at,
        model.id,
        limit=limit,
        after=args.get("cursor") or None,
        after_param="cursor",
    )
    return jsonify({name: [row.to_dict() for row in page.items], "next_cursor": page.next_cursor})


@bp.get("/payments")
@account_scoped
def list_payments() -> ResponseReturnValue:
    """Payments, most recently updated first; filters `status`, `q`; a cursor to the next page."""
    payment_filter = replace(parse_payment_filter(request.args), account_id=api_account_id())
    return updated_first_page("payments", payment_filter.query(), Payment)


@bp.get("/payments/<mp_id>")
@account_scoped
def get_payment(mp_id: str) -> ResponseReturnValue:
    """One payment by its MercadoPago id, with the events that touched it (newest first)."""
    payment = find_payment(mp_id, api_account_id())
    if payment is None:
        abort(404, f"payment {mp_id} does not exist")
    data = payment.to_dict()
    data["events"] = [event.to_dict() for event in payment_events(payment)]
    return jsonify(data)


@bp.get("/stats")
@account_scoped
def stats() -> ResponseReturnValue:
    """Counts, success rate, throughput, latency percentiles, queue depth, oldest pending."""
    hours = parse_int(
        "hours", request.args.get("hours"), default=1, minimum=1, maximum=MAX_STATS_HOURS
    )
    return jsonify(dashboard(hours, account_id=api_account_id()))


def _event_or_404(event_id: int) -> WebhookEvent:
    # Another account's event is "missing" too: the same 404, nothing learnt.
    event = find_event(event_id, api_account_id())
    if event is None:
        abort(404, f"event {event_id} does not exist")
    return event


def _order(value: str | None) -> bool:
    """`order`: desc (newest first, the default) or asc; True for descending."""
    if value in (None, "", "desc"):
        return True
    if value == "asc":
        return False
    raise BadRequest("order: must be asc or desc")


def _json_typed() -> bool:
    """The body is declared JSON, or there is none and no other type is claimed.

    A body-less POST carries no Content-Type (`curl -X POST`); a cross-site one
    cannot carry the bearer token either, so it needs no type.
    """
    if request.mimetype == "application/json":
        return True
    return not request.mimetype and not request.get_data()


def _json_body() -> dict[str, Any]:
    """The request's JSON object, {} when there is no body; nesting capped (json_input)."""
    data = request.get_data()
    if not data:
        return {}
    try:
        body = parse_json(data)
    except JsonInputError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


# /api/processing and the other resources' routes, on this blueprint (their own modules).
from . import api_accounts, api_processing, api_resources  # noqa: E402, F401
