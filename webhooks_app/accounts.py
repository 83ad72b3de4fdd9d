"""Accounts: one merchant each, with its own MercadoPago application and GoHighLevel location.

One deployment serves many accounts (an agency's clients). Every event, attempt and
stored resource row carries its `account_id`; everything a worker does for an event is
done with its account's settings (`account_config()`), its clients (`clients`) and its
queue (`queue_name`).

The default account (id 1, slug `default`, created by migration d1a7c3e9f5b2) is the
single-merchant deployment of before: every setting it leaves empty comes from the
environment (MP_ACCESS_TOKEN, MP_WEBHOOK_SECRET, GHL_* …), and the bare `/webhooks/mp`
is its URL. Other accounts have their own values, secrets encrypted at rest
(`secret_box`), and receive at `/webhooks/mp/<slug>`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import ChainMap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Boolean, DateTime, Float, String, Text, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from . import secret_box
from .config import ConfigError, parse_custom_fields, parse_status_tags, parse_tag_mode
from .extensions import db
from .timeutil import isoformat, utcnow

DEFAULT_ACCOUNT_ID = 1
DEFAULT_SLUG = "default"
# Lower-case letters, digits and hyphens: it is a URL path segment and a queue name's suffix.
SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


# What reading an account's settings can raise besides a bug: the database unreachable, or
# its secrets unreadable (ACCOUNT_SECRET_KEYS unset or missing the key that encrypted them).
UNREADABLE = (SQLAlchemyError, ConfigError, secret_box.SecretUnreadable)


class AccountError(ValueError):
    """An account's settings are invalid; the message says which and why."""


class Account(db.Model):
    """One merchant: its MercadoPago application and GoHighLevel location (secrets
    encrypted: the `*_encrypted` columns hold Fernet tokens, never a secret in clear)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mp_access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    # One secret, or several comma-separated (the newest first) while rotating.
    mp_webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    ghl_location_id: Mapped[str | None] = mapped_column(String(64))
    ghl_api_token_encrypted: Mapped[str | None] = mapped_column(Text)
    # Empty: the deployment's GHL_STATUS_TAGS / GHL_TAG_MODE / GHL_CUSTOM_FIELDS.
    # Kept as their environment variables' text ("approved=paid,rejected=…").
    status_tags: Mapped[str | None] = mapped_column(Text)
    tag_mode: Mapped[str | None] = mapped_column(String(16))
    custom_fields: Mapped[str | None] = mapped_column(Text)
    # Empty: RETENTION_DAYS.
    retention_days: Mapped[float | None] = mapped_column(Float)
    # SHA-256 of the account's API token (a token that sees this account only), if any.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_ACCOUNT_ID

    def set_secret(self, name: str, value: str | None) -> None:
        """Store `mp_access_token`, `mp_webhook_secret` or `ghl_api_token`, encrypted."""
        if name not in SECRET_FIELDS:
            raise AccountError(f"{name!r} is not an account secret")
        setattr(self, f"{name}_encrypted", secret_box.encrypt(value or None))

    def has_secret(self, name: str) -> bool:
        return getattr(self, f"{name}_encrypted") is not None

    def to_dict(self) -> dict[str, Any]:
        """What the admin, the API and the CLI show: never a secret, only whether it is set."""
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "enabled": self.enabled,
            "webhook_path": webhook_path(self.slug),
            "ghl_location_id": self.ghl_location_id,
            "mp_access_token_set": self.has_secret("mp_access_token"),
            "mp_webhook_secret_set": self.has_secret("mp_webhook_secret"),
            "ghl_api_token_set": self.has_secret("ghl_api_token"),
            "api_token_set": self.api_token_hash is not None,
            "status_tags": self.status_tags,
            "tag_mode": self.tag_mode,
            "custom_fields": self.custom_fields,
            "retention_days": self.retention_days,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


SECRET_FIELDS = ("mp_access_token", "mp_webhook_secret", "ghl_api_token")


def webhook_path(slug: str) -> str:
    """The path MercadoPago is given for the account (the default account's is the bare one)."""
    return "/webhooks/mp" if slug == DEFAULT_SLUG else f"/webhooks/mp/{slug}"


def validate_slug(slug: str) -> str:
    if not SLUG_PATTERN.fullmatch(slug or ""):
        raise AccountError(
            "a slug is 1-64 lower-case letters, digits and hyphens, not starting or ending "
            f"with a hyphen; got {slug!r}"
        )
    return slug


def hash_api_token(token: str) -> str:
    """What is stored of an account's API token (the token itself is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class AccountSettings:
    """An account's settings as a worker or a request uses them: secrets in clear, in memory
    only; `config` is the app's config with this account's values over it."""

    id: int
    slug: str
    name: str
    enabled: bool
    config: Mapping[str, Any] = field(repr=False)
    # Changes whenever the stored row does: what per-account caches (clients) are keyed on.
    version: str = ""

    @property
    def webhook_secret(self) -> str | None:
        return self.config.get("MP_WEBHOOK_SECRET")


def _overlay(account: Account) -> dict[str, Any]:
    """The account's own values, by the config names they stand for (empty ones left out)."""
    values: dict[str, Any] = {
        "MP_ACCESS_TOKEN": secret_box.decrypt(account.mp_access_token_encrypted),
        "MP_WEBHOOK_SECRET": secret_box.decrypt(account.mp_webhook_secret_encrypted),
        "GHL_API_TOKEN": secret_box.decrypt(account.ghl_api_token_encrypted),
        "GHL_LOCATION_ID": account.ghl_location_id,
        "RETENTION_DAYS": account.retention_days,
    }
    if account.status_tags is not None:
        values["GHL_STATUS_TAGS"] = parse_status_tags(account.status_tags)
    if account.tag_mode is not None:
        values["GHL_TAG_MODE"] = parse_tag_mode(account.tag_mode)
    if account.custom_fields is not None:
        values["GHL_CUSTOM_FIELDS"] = parse_custom_fields(account.custom_fields)
    overlay = {name: value for name, value in values.items() if value is not None}
    if not account.is_default:
        # Another account never falls back to the deployment's credentials.
        for name in ("MP_ACCESS_TOKEN", "MP_WEBHOOK_SECRET", "GHL_API_TOKEN", "GHL_LOCATION_ID"):
            overlay.setdefault(name, None)
    return overlay


def settings_of(account: Account) -> AccountSettings:
    """The account's settings over the app's config."""
    return AccountSettings(
        id=account.id,
        slug=account.slug,
        name=account.name,
        enabled=account.enabled,
        config=ChainMap(_overlay(account), current_app.config),
        version=isoformat(account.updated_at) or "",
    )


class _Cache:
    """Settings by id and by slug, each kept ACCOUNT_CACHE_SECONDS (0: read every time):
    the webhook route and the worker read them for every event.

    Only accounts that exist are kept: a sender inventing slugs must not grow it (each
    unknown slug is one indexed SELECT, as any 404 of a database-backed page). At most
    MAX_CACHED entries, in case of many accounts."""

    MAX_CACHED = 4096

    def __init__(self) -> None:
        self.by_key: dict[Any, tuple[float, AccountSettings]] = {}

    def get(self, key: Any, load: Any) -> AccountSettings | None:
        ttl = current_app.config["ACCOUNT_CACHE_SECONDS"]
        now = time.monotonic()
        hit = self.by_key.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        settings = load()
        if ttl > 0 and settings is not None:
            if len(self.by_key) >= self.MAX_CACHED:
                self.by_key.clear()
            self.by_key[key] = (now, settings)
        return settings

    def clear(self) -> None:
        self.by_key.clear()


def _cache() -> _Cache:
    return current_app.extensions.setdefault("account_cache", _Cache())


def forget_cached() -> None:
    """Drop this process's cached settings (after an operator changed an account)."""
    _cache().clear()


def _load(statement: Any) -> AccountSettings | None:
    # A session of its own: the caller's (a job's pinned one) may be mid-transaction.
    with db.engine.connect() as connection, db.Session(bind=connection) as session:
        account = session.scalars(statement).first()
        return settings_of(account) if account is not None else None


def by_slug(slug: str) -> AccountSettings | None:
    """The account with this slug (enabled or not), or None; None at once for a string no
    slug can be (a URL's or a form's: it never reaches the database or the cache)."""
    if not SLUG_PATTERN.fullmatch(slug or ""):
        return None
    return _cache().get(("slug", slug), lambda: _load(select(Account).filter_by(slug=slug)))


def by_id(account_id: int) -> AccountSettings | None:
    """The account with this id (enabled or not), or None."""
    return _cache().get(("id", account_id), lambda: _load(select(Account).filter_by(id=account_id)))


def default_account() -> AccountSettings:
    settings = by_id(DEFAULT_ACCOUNT_ID)
    if settings is None:  # the migration creates it; a database without it is not migrated
        raise RuntimeError("the default account (id 1) is missing: run `flask db upgrade`")
    return settings


# The account whose event is being processed (or whose request is being served).
_current: ContextVar[AccountSettings | None] = ContextVar("current_account", default=None)


@contextmanager
def using_account(settings: AccountSettings) -> Iterator[AccountSettings]:
    """Run the block for this account: `current_account()` and `account_config()` are its."""
    token = _current.set(settings)
    try:
        yield settings
    finally:
        _current.reset(token)


def current_account() -> AccountSettings:
    """The account of the event being processed; the default account outside of one."""
    return _current.get() or default_account()


def current_account_id() -> int:
    settings = _current.get()
    return settings.id if settings is not None else DEFAULT_ACCOUNT_ID


def account_config() -> Mapping[str, Any]:
    """The config as the current account sees it (its values over the app's)."""
    settings = _current.get()
    return settings.config if settings is not None else default_account().config


def all_account_ids() -> list[int]:
    """Every account's id (enabled or not: a disabled one's stored events still run)."""
    return list(db.session.scalars(select(Account.id).order_by(Account.id)))
