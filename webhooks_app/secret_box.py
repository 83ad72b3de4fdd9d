"""Encryption at rest of the accounts' secrets (MercadoPago and GoHighLevel tokens, webhook
secrets): `cryptography`'s Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp), under
`ACCOUNT_SECRET_KEYS`.

`ACCOUNT_SECRET_KEYS` is one Fernet key, or several comma-separated, the newest first
(`MultiFernet`): values are encrypted with the first and decrypted with any, so a key is
rotated by putting a new one first, running `flask webhooks accounts reencrypt` (which
rewrites every stored secret under the new key) and then dropping the old one.
Development and the tests use a fixed development key when none is set (the same whatever
else is configured: setting ADMIN_PASSWORD later, which derives SECRET_KEY, must not make
the secrets stored so far unreadable); it is public, so production refuses it and will not
store or read an account secret without ACCOUNT_SECRET_KEYS (config.ProductionConfig).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

from .config import ConfigError


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with any key of ACCOUNT_SECRET_KEYS."""


def generate_key() -> str:
    """A new Fernet key, for ACCOUNT_SECRET_KEYS."""
    return Fernet.generate_key().decode()


def _keys() -> list[str]:
    config = current_app.config
    keys = [key.strip() for key in (config.get("ACCOUNT_SECRET_KEYS") or "").split(",")]
    keys = [key for key in keys if key]
    if keys:
        return keys
    if config.get("ACCOUNT_DEVELOPMENT_KEY"):
        # Development and tests only: a fixed, public key.
        digest = hashlib.sha256(b"account-secrets: development and tests only").digest()
        return [base64.urlsafe_b64encode(digest).decode()]
    raise ConfigError(
        "ACCOUNT_SECRET_KEYS is not set: account secrets cannot be encrypted or read. "
        "Generate one with `flask webhooks accounts generate-key` (see README, 'Accounts')."
    )


def _box() -> MultiFernet:
    keys = tuple(_keys())
    cache = current_app.extensions.setdefault("secret_box", {})
    if keys not in cache:
        try:
            cache.clear()
            cache[keys] = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError:
            raise ConfigError(
                "ACCOUNT_SECRET_KEYS must be Fernet keys (32 url-safe base64-encoded bytes), "
                "comma-separated"
            ) from None
    return cache[keys]


def encrypt(value: str | None) -> str | None:
    """The value encrypted under the newest key (None stays None)."""
    if value is None:
        return None
    return _box().encrypt(value.encode()).decode()


def decrypt(token: str | None) -> str | None:
    """The stored value in clear; SecretUnreadable if no key opens it."""
    if token is None:
        return None
    try:
        return _box().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "an account secret cannot be decrypted with ACCOUNT_SECRET_KEYS "
            "(was the key that encrypted it removed?)"
        ) from None


def reencrypt(token: str | None) -> str | None:
    """The stored value encrypted again under the newest key (MultiFernet.rotate)."""
    if token is None:
        return None
    try:
        return _box().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "an account secret cannot be decrypted with ACCOUNT_SECRET_KEYS"
        ) from None
