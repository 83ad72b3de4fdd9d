"""Admin pages of accounts (accounts.py): list, create, edit, enable/disable, rotate the
webhook secret, delete with all its data; and the account selector every listing shows.

Routes on the admin blueprint (its login and CSRF check apply), imported at the end of
admin.py. Every change goes through account_ops, the one implementation the API and the
CLI use too. A secret is never rendered: forms take a new one (empty = unchanged), pages
say only whether one is set.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..account_ops import (
    PLAIN_FIELDS,
    create_account,
    delete_account,
    find_account,
    finish_webhook_secret_rotation,
    list_accounts,
    rotate_webhook_secret,
    rotation_in_progress,
    set_enabled,
    update_account,
)
from ..accounts import DEFAULT_ACCOUNT_ID, SECRET_FIELDS, Account, AccountError, webhook_path
from ..config import TAG_MODES
from ..extensions import db
from ..models import EventStatus, WebhookEvent
from .admin import bp

# The event statuses counted per account on the list (the ones an operator acts on; both
# are few, and (account_id, status) is indexed).
COUNTED_STATUSES = (EventStatus.FAILED, EventStatus.PENDING)


# -- the account of every row, and the selector of every listing -------------------


def _slugs() -> dict[int, str]:
    """Every account's slug by id, read once per request (accounts are few)."""
    if "admin_account_slugs" not in g:
        try:
            rows = db.session.execute(select(Account.id, Account.slug).order_by(Account.id))
            g.admin_account_slugs = {account_id: slug for account_id, slug in rows}
        except SQLAlchemyError:  # the page says what failed; the selector must not hide it
            db.session.rollback()
            g.admin_account_slugs = {}
    return g.admin_account_slugs


@bp.app_template_global("account_slug")
def account_slug(account_id: int | None) -> str:
    """The slug of the account a row belongs to (its id if the account is gone)."""
    if account_id is None:
        return "—"
    return _slugs().get(account_id, str(account_id))


@bp.app_template_global("account_slugs")
def account_slugs() -> list[str]:
    """Every account's slug, for the `account` selector of the listings."""
    return list(_slugs().values())


@bp.app_template_global("account_arg")
def account_arg(account_id: int | None) -> dict[str, str]:
    """The `account` query argument a link to a row's page carries: none for the default
    account (its rows' links stay the bare ones, as its webhook URL is), the slug otherwise,
    so that a payment id stored by two accounts opens the right one."""
    if account_id is None or account_id == DEFAULT_ACCOUNT_ID:
        return {}
    return {"account": account_slug(account_id)}


@bp.app_template_global("webhook_url")
def webhook_url(slug: str) -> str:
    """The full URL to give MercadoPago for the account (as this request reached us)."""
    return request.url_root.rstrip("/") + webhook_path(slug)


# -- pages -------------------------------------------------------------------------


def _event_counts() -> dict[int, dict[str, int]]:
    """Failed and pending events by account id."""
    rows = db.session.execute(
        select(WebhookEvent.account_id, WebhookEvent.status, func.count())
        .where(WebhookEvent.status.in_(COUNTED_STATUSES))
        .group_by(WebhookEvent.account_id, WebhookEvent.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for account_id, status, count in rows:
        counts.setdefault(account_id, {})[status] = count
    return counts


@bp.get("/accounts")
def accounts() -> ResponseReturnValue:
    """Every account: its webhook URL, its GoHighLevel location, which secrets are set."""
    rows = list_accounts()
    rotating = {account.id: rotation_in_progress(account) for account in rows}
    return render_template(
        "admin/accounts.html",
        accounts=rows,
        rotating=rotating,
        counts=_event_counts(),
        counted=COUNTED_STATUSES,
    )


def _form_values() -> dict[str, str]:
    """The account fields the form sent: secrets as typed (empty: unchanged), the rest
    stripped (empty: cleared, i.e. the deployment's setting)."""
    names = (*PLAIN_FIELDS, *SECRET_FIELDS)
    return {name: request.form.get(name, "") for name in names}


def _shown(values: dict[str, Any]) -> dict[str, str]:
    """What the form's inputs are filled with: never a secret."""
    shown = {}
    for name, value in values.items():
        if name in SECRET_FIELDS:
            continue
        if isinstance(value, float):
            value = f"{value:g}"
        shown[name] = "" if value is None else str(value)
    return shown


def _render_new(form: dict[str, str], error: str | None) -> str:
    return render_template("admin/account_new.html", form=form, error=error, tag_modes=TAG_MODES)


@bp.route("/accounts/new", methods=["GET", "POST"])
def new_account() -> ResponseReturnValue:
    """The form for a new account; POST creates it."""
    if request.method == "GET":
        return _render_new({}, None)
    values = _form_values()
    slug = request.form.get("slug", "").strip()
    try:
        account = create_account(slug, values.pop("name"), **values)
    except AccountError as exc:
        form = {"slug": slug, **_shown({"name": request.form.get("name", ""), **values})}
        return _render_new(form, str(exc)), 400
    flash(
        f"Account {account.slug} created. Give MercadoPago its webhook URL: "
        f"{webhook_url(account.slug)}",
        "success",
    )
    return redirect(url_for(".account", slug=account.slug))


def _found(slug: str) -> Account:
    account = find_account(slug)
    if account is None:
        abort(404, f"no account has the slug {slug!r}")
    return account


def _render_account(account: Account, form: dict[str, str], error: str | None) -> str:
    return render_template(
        "admin/account.html",
        account=account,
        form=form,
        error=error,
        tag_modes=TAG_MODES,
        rotating=rotation_in_progress(account),
        counts=_event_counts().get(account.id, {}),
        counted=COUNTED_STATUSES,
    )


@bp.route("/accounts/<slug>", methods=["GET", "POST"])
def account(slug: str) -> ResponseReturnValue:
    """One account and its edit form; POST saves the form (an empty secret: unchanged)."""
    found = _found(slug)
    if request.method == "GET":
        stored = {name: getattr(found, name) for name in PLAIN_FIELDS}
        return _render_account(found, _shown(stored), None)
    values = _form_values()
    try:
        update_account(found, **values)
    except AccountError as exc:
        db.session.refresh(found)  # show what is stored, with the form as it was sent
        return _render_account(found, _shown(values), str(exc)), 400
    changed = [name for name in SECRET_FIELDS if values[name]]
    note = f" (new {', '.join(changed)})" if changed else ""
    flash(f"Account {found.slug} saved{note}.", "success")
    return redirect(url_for(".account", slug=found.slug))


@bp.post("/accounts/<slug>/enable")
def enable_account(slug: str) -> ResponseReturnValue:
    set_enabled(_found(slug), True)
    flash(f"Account {slug} enabled: its webhook URL accepts notifications again.", "success")
    return redirect(url_for(".account", slug=slug))


@bp.post("/accounts/<slug>/disable")
def disable_account(slug: str) -> ResponseReturnValue:
    set_enabled(_found(slug), False)
    flash(
        f"Account {slug} disabled: its webhook URL answers 404 and stores nothing; "
        "the events it stored before still run.",
        "warning",
    )
    return redirect(url_for(".account", slug=slug))


@bp.post("/accounts/<slug>/rotate-secret")
def rotate_secret(slug: str) -> ResponseReturnValue:
    """A new webhook secret; the previous one is still accepted until the rotation is
    finished (MercadoPago may sign with either while it switches over)."""
    found = _found(slug)
    first = not found.has_secret("mp_webhook_secret")
    try:
        rotate_webhook_secret(found, request.form.get("new_secret", ""))
    except AccountError as exc:
        flash(f"Not rotated: {exc}.", "error")
    else:
        flash(
            f"Account {slug}: webhook secret set; its notifications are verified with it now."
            if first
            else f"Account {slug}: new webhook secret saved; the previous one is still "
            "accepted until you finish the rotation.",
            "success",
        )
    return redirect(url_for(".account", slug=slug))


@bp.post("/accounts/<slug>/finish-rotation")
def finish_rotation(slug: str) -> ResponseReturnValue:
    """Stop accepting the previous webhook secret."""
    if finish_webhook_secret_rotation(_found(slug)):
        flash(f"Account {slug}: only the newest webhook secret is accepted now.", "success")
    else:
        flash(f"Account {slug}: no rotation in progress, nothing changed.", "info")
    return redirect(url_for(".account", slug=slug))


@bp.post("/accounts/<slug>/delete")
def remove_account(slug: str) -> ResponseReturnValue:
    """Delete the account and everything stored for it, once its slug is typed to confirm."""
    found = _found(slug)
    if request.form.get("confirm_slug", "").strip() != found.slug:
        flash(f"Not deleted: type the slug {found.slug} to confirm.", "error")
        return redirect(url_for(".account", slug=slug))
    try:
        report = delete_account(found)
    except AccountError as exc:
        flash(f"Not deleted: {exc}.", "error")
        return redirect(url_for(".account", slug=slug))
    text = report.summary()
    flash(f"{text[0].upper()}{text[1:]}.", "success")
    return redirect(url_for(".accounts"))
