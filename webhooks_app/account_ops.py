"""What operators do to accounts, one implementation for the admin, the API and the CLI:
create, edit, enable/disable, rotate the webhook secret, issue an API token, delete with
all of its data, and re-encrypt every secret under the newest key.

Every change is validated first (AccountError says what is wrong) and drops this process's
cached settings (`accounts.forget_cached`); other processes see it within
ACCOUNT_CACHE_SECONDS.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis import RedisError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from . import queueing, secret_box
from .accounts import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_SLUG,
    SECRET_FIELDS,
    SLUG_PATTERN,
    Account,
    AccountError,
    forget_cached,
    hash_api_token,
    validate_slug,
)
from .config import ConfigError, parse_custom_fields, parse_status_tags, parse_tag_mode
from .extensions import db
from .models import Erasure, MpAlert, Payment, Subscription, WebhookAttempt, WebhookEvent
from .resources import AuthorizedPayment, Chargeback, MerchantOrder, MerchantOrderPayment

logger = logging.getLogger(__name__)

# What `create_account` and `update_account` accept besides the secrets.
PLAIN_FIELDS = (
    "name",
    "ghl_location_id",
    "status_tags",
    "tag_mode",
    "custom_fields",
    "retention_days",
)
# A new account needs all of these (the default one takes them from the environment). Its
# webhook secret comes later: MercadoPago shows it once the account's URL is saved there;
# until it is pasted back, the account's notifications are refused (401) and MercadoPago
# delivers them again later.
REQUIRED = ("mp_access_token", "ghl_location_id", "ghl_api_token")
# Slugs an account cannot take: `default` is the default account's, and the admin's
# /admin/accounts/new would hide an account called `new`.
RESERVED_SLUGS = (DEFAULT_SLUG, "new")


def find_account(slug: str) -> Account | None:
    """The account with this slug (as stored), or None (at once for what no slug can be)."""
    if not SLUG_PATTERN.fullmatch(slug or ""):
        return None
    return db.session.scalars(select(Account).filter_by(slug=slug)).first()


def list_accounts() -> list[Account]:
    return list(db.session.scalars(select(Account).order_by(Account.id)))


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise the given fields ("" clears an optional one)."""
    unknown = set(values) - set(PLAIN_FIELDS) - set(SECRET_FIELDS)
    if unknown:
        raise AccountError(f"unknown account field(s): {', '.join(sorted(unknown))}")
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str):
            value = value.strip()
        cleaned[name] = None if value == "" else value
    name = cleaned.get("name")
    if "name" in cleaned and (not name or len(name) > 255):
        raise AccountError("a name is 1-255 characters")
    try:
        if cleaned.get("status_tags") is not None:
            parse_status_tags(cleaned["status_tags"])
        if cleaned.get("tag_mode") is not None:
            cleaned["tag_mode"] = parse_tag_mode(cleaned["tag_mode"])
        if cleaned.get("custom_fields") is not None:
            parse_custom_fields(cleaned["custom_fields"])
    except ConfigError as exc:
        raise AccountError(str(exc)) from None
    days = cleaned.get("retention_days")
    if days is not None:
        try:
            cleaned["retention_days"] = float(days)
        except (TypeError, ValueError):
            raise AccountError("retention_days is a number of days (0 keeps everything)") from None
        if not 0 <= cleaned["retention_days"] < 100_000:
            raise AccountError("retention_days must be >= 0")
    location = cleaned.get("ghl_location_id")
    if location is not None and (len(location) > 64 or not location.isprintable()):
        raise AccountError("a GoHighLevel location id is at most 64 printable characters")
    return cleaned


def _apply(account: Account, cleaned: Mapping[str, Any]) -> None:
    for name, value in cleaned.items():
        if name in SECRET_FIELDS:
            account.set_secret(name, value)
        else:
            setattr(account, name, value)


def _commit(account: Account) -> Account:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AccountError(f"an account with the slug {account.slug!r} exists already") from None
    forget_cached()
    return account


def create_account(slug: str, name: str, **values: Any) -> Account:
    """A new, enabled account; every one of REQUIRED must be given."""
    validate_slug(slug)
    if slug == DEFAULT_SLUG:
        raise AccountError("the slug 'default' is the default account's")
    if slug in RESERVED_SLUGS:
        raise AccountError(f"the slug {slug!r} is reserved: choose another")
    cleaned = _clean({"name": name, **values})
    missing = [field for field in REQUIRED if not cleaned.get(field)]
    if missing:
        raise AccountError(f"a new account needs: {', '.join(missing)}")
    account = Account(slug=slug, enabled=True)
    _apply(account, cleaned)
    db.session.add(account)
    _commit(account)
    logger.info("account %s (%s) created", account.id, account.slug)
    return account


def update_account(account: Account, **values: Any) -> Account:
    """Change the given fields; a secret given as None or "" is left as it is (secrets are
    never shown, so an empty field in a form means "unchanged")."""
    values = {
        name: value
        for name, value in values.items()
        if not (name in SECRET_FIELDS and value in (None, ""))
    }
    cleaned = _clean(values)
    if not account.is_default:
        cleared = [field for field in REQUIRED if field in cleaned and not cleaned[field]]
        if cleared:
            raise AccountError(f"an account needs: {', '.join(cleared)}")
    _apply(account, cleaned)
    _commit(account)
    logger.info("account %s (%s) updated: %s", account.id, account.slug, ", ".join(cleaned))
    return account


def set_enabled(account: Account, enabled: bool) -> Account:
    """Enable or disable: a disabled account's URL answers 404 and stores nothing; the events
    it stored before still run."""
    account.enabled = enabled
    _commit(account)
    state = "enabled" if enabled else "disabled"
    logger.info("account %s (%s) %s", account.id, account.slug, state)
    return account


def rotate_webhook_secret(account: Account, new_secret: str, *, keep_previous: bool = True) -> None:
    """Make `new_secret` the account's webhook secret. With `keep_previous`, the previous
    secret(s) stay accepted after it ("new,old", as MP_WEBHOOK_SECRET while rotating) until
    the rotation is finished by calling again with `keep_previous=False`."""
    new_secret = (new_secret or "").strip()
    if not new_secret or "," in new_secret:
        raise AccountError("a webhook secret is non-empty and has no comma")
    if account.is_default and not account.has_secret("mp_webhook_secret"):
        raise AccountError(
            "the default account's secret is MP_WEBHOOK_SECRET in the environment: rotate it "
            'there ("new,old" while MercadoPago switches over)'
        )
    previous = secret_box.decrypt(account.mp_webhook_secret_encrypted) or ""
    secrets_now = [new_secret]
    if keep_previous:
        secrets_now += [old for old in previous.split(",") if old and old != new_secret][:2]
    account.set_secret("mp_webhook_secret", ",".join(secrets_now))
    _commit(account)
    logger.info("account %s (%s): webhook secret rotated", account.id, account.slug)


def finish_webhook_secret_rotation(account: Account) -> bool:
    """End a rotation: only the newest webhook secret stays accepted (MercadoPago signs with
    it now); the previous ones stop working. Returns whether a rotation was in progress
    (False: nothing to finish); AccountError if the account has no secret of its own."""
    current = secret_box.decrypt(account.mp_webhook_secret_encrypted) or ""
    if not current:
        raise AccountError(f"the account {account.slug!r} has no webhook secret of its own")
    secrets_now = current.split(",")
    if len(secrets_now) < 2:
        return False
    rotate_webhook_secret(account, secrets_now[0], keep_previous=False)
    return True


def rotation_in_progress(account: Account) -> bool:
    """Whether the account accepts a previous webhook secret besides the newest one."""
    return "," in (secret_box.decrypt(account.mp_webhook_secret_encrypted) or "")


def issue_api_token(account: Account) -> str:
    """A new API token that sees this account only (the previous one stops working).
    Only its hash is stored: the token is shown once, here."""
    token = f"acct_{account.slug}_{secrets.token_urlsafe(32)}"
    account.api_token_hash = hash_api_token(token)
    _commit(account)
    logger.info("account %s (%s): API token issued", account.id, account.slug)
    return token


def revoke_api_token(account: Account) -> None:
    account.api_token_hash = None
    _commit(account)


def account_for_token(token: str) -> Account | None:
    """The account whose API token this is, or None."""
    if not token:
        return None
    return db.session.scalars(
        select(Account).filter_by(api_token_hash=hash_api_token(token))
    ).first()


@dataclass
class DeletionReport:
    """What deleting an account removed, by table."""

    slug: str
    rows: dict[str, int]

    def summary(self) -> str:
        counts = ", ".join(f"{count} {table}" for table, count in self.rows.items() if count)
        return f"account {self.slug} deleted ({counts or 'no data'})"


def delete_account(account: Account) -> DeletionReport:
    """Delete the account and everything stored for it (events and their attempts, payments,
    orders, chargebacks, subscriptions and their charges, alerts), in one transaction.
    The default account cannot be deleted (the environment's settings are its)."""
    if account.id == DEFAULT_ACCOUNT_ID:
        raise AccountError("the default account cannot be deleted (disable it instead)")
    account_id, slug = account.id, account.slug
    events = select(WebhookEvent.id).where(WebhookEvent.account_id == account_id)
    orders = select(MerchantOrder.id).where(MerchantOrder.account_id == account_id)
    statements = {
        "attempts": delete(WebhookAttempt).where(WebhookAttempt.event_id.in_(events)),
        "events": delete(WebhookEvent).where(WebhookEvent.account_id == account_id),
        "payments": delete(Payment).where(Payment.account_id == account_id),
        "order payment links": delete(MerchantOrderPayment).where(
            MerchantOrderPayment.merchant_order_id.in_(orders)
        ),
        "merchant orders": delete(MerchantOrder).where(MerchantOrder.account_id == account_id),
        "chargebacks": delete(Chargeback).where(Chargeback.account_id == account_id),
        "subscription charges": delete(AuthorizedPayment).where(
            AuthorizedPayment.account_id == account_id
        ),
        "subscriptions": delete(Subscription).where(Subscription.account_id == account_id),
        "alerts": delete(MpAlert).where(MpAlert.account_id == account_id),
    }
    rows = {
        table: db.session.execute(statement).rowcount or 0
        for table, statement in statements.items()
    }
    # Erasure records stay (they record that an erasure happened) but no longer name it.
    db.session.execute(
        Erasure.__table__.update().where(Erasure.account_id == account_id).values(account_id=None)
    )
    db.session.delete(account)
    db.session.commit()
    forget_cached()
    _drop_queue(account_id)
    logger.info("account %s (%s) deleted with its data: %s", account_id, slug, rows)
    return DeletionReport(slug, rows)


def _drop_queue(account_id: int) -> None:
    """Delete the account's RQ queue and its jobs (their events are gone: each would find
    nothing); left to Redis if it is down (the jobs are dropped when they run)."""
    try:
        queueing.get_queue(name=queueing.account_queue_name(account_id)).delete(delete_jobs=True)
    except RedisError as exc:
        logger.warning("account %s: its queue was not deleted (%s)", account_id, exc)


def reencrypt_all() -> int:
    """Encrypt every stored secret again under the newest key of ACCOUNT_SECRET_KEYS (after
    putting a new key first); returns how many accounts were rewritten. Then the old key can
    be dropped."""
    count = 0
    for account in list_accounts():
        for name in SECRET_FIELDS:
            column = f"{name}_encrypted"
            setattr(account, column, secret_box.reencrypt(getattr(account, column)))
        count += 1
    db.session.commit()
    forget_cached()
    logger.info("account secrets re-encrypted under the newest key (%d account(s))", count)
    return count
