"""`/api/accounts`: list, create, edit, enable/disable, rotate the webhook secret, issue or
revoke an account's API token, delete (on the API blueprint; the global token only: no
view here is `account_scoped`, so an account's token gets 403).

Secrets go in (a create's or an edit's body, a rotation's) and never come out: every
answer is `Account.to_dict()`, which says only whether each is set. The one exception is
the account's API token, in the answer that issues it (only its hash is stored).
"""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify
from flask.typing import ResponseReturnValue

from .. import account_ops
from ..account_ops import PLAIN_FIELDS
from ..accounts import SECRET_FIELDS, Account, AccountError
from ..config import ConfigError
from ..filters import CONTROL_CHARS, parse_bool
from .api import BadRequest, _json_body, bp

# What a body may set (besides a create's `slug` and an edit's `enabled`).
FIELDS = (*PLAIN_FIELDS, *SECRET_FIELDS)


@bp.errorhandler(AccountError)
def account_refused(exc: AccountError) -> ResponseReturnValue:
    # AccountError messages name fields, never their secret values.
    return jsonify({"error": str(exc)}), 400


@bp.errorhandler(ConfigError)
def secrets_unconfigured(exc: ConfigError) -> ResponseReturnValue:
    """ACCOUNT_SECRET_KEYS missing or malformed: nothing can be encrypted or read."""
    return jsonify({"error": str(exc)}), 503


@bp.get("/accounts")
def list_accounts() -> ResponseReturnValue:
    """Every account (no secrets: only whether each is set)."""
    return jsonify({"accounts": [account.to_dict() for account in account_ops.list_accounts()]})


@bp.post("/accounts")
def create_account() -> ResponseReturnValue:
    """A new, enabled account: `slug`, `name` and its MercadoPago and GoHighLevel settings."""
    body = _json_body()
    slug = _string(body, "slug")
    name = _string(body, "name")
    if slug is None or name is None:
        raise BadRequest("slug and name are required")
    values = _fields({key: value for key, value in body.items() if key not in ("slug", "name")})
    account = account_ops.create_account(slug, name, **values)
    return jsonify(account.to_dict()), 201


@bp.get("/accounts/<slug>")
def get_account(slug: str) -> ResponseReturnValue:
    """One account."""
    return jsonify(_account_or_404(slug).to_dict())


@bp.patch("/accounts/<slug>")
def edit_account(slug: str) -> ResponseReturnValue:
    """Change the given fields; `enabled` enables or disables it. A secret left out (or
    empty) is unchanged; an optional field set to "" or null goes back to the default."""
    account = _account_or_404(slug)
    body = _json_body()
    enabled = parse_bool("enabled", body["enabled"]) if "enabled" in body else None
    values = _fields({key: value for key, value in body.items() if key != "enabled"})
    if values:
        account_ops.update_account(account, **values)
    if enabled is not None and enabled != account.enabled:
        account_ops.set_enabled(account, enabled)
    return jsonify(account.to_dict())


@bp.post("/accounts/<slug>/rotate-secret")
def rotate_secret(slug: str) -> ResponseReturnValue:
    """`secret`: the new webhook secret, accepted along with the previous one until the
    rotation is finished (`finish: true`, alone: keep only the newest; with `secret`: replace
    at once)."""
    account = _account_or_404(slug)
    body = _json_body()
    _known(body, ("secret", "finish"))
    secret = _string(body, "secret")
    finish = parse_bool("finish", body.get("finish"))
    if secret is not None:
        account_ops.rotate_webhook_secret(account, secret, keep_previous=not finish)
    elif finish:
        account_ops.finish_webhook_secret_rotation(account)
    else:
        raise BadRequest("give the new `secret`, or `finish: true` to drop the previous one(s)")
    return jsonify(account.to_dict())


@bp.post("/accounts/<slug>/token")
def issue_token(slug: str) -> ResponseReturnValue:
    """A new API token that sees this account only; shown here once (only its hash is
    stored), the previous one stops working."""
    account = _account_or_404(slug)
    token = account_ops.issue_api_token(account)
    return jsonify({"token": token, "account": account.to_dict()})


@bp.delete("/accounts/<slug>/token")
def revoke_token(slug: str) -> ResponseReturnValue:
    """The account's API token stops working."""
    account = _account_or_404(slug)
    account_ops.revoke_api_token(account)
    return jsonify(account.to_dict())


@bp.delete("/accounts/<slug>")
def delete_account(slug: str) -> ResponseReturnValue:
    """Delete the account and everything stored for it (not the default account)."""
    report = account_ops.delete_account(_account_or_404(slug))
    return jsonify({"deleted": report.slug, "rows": report.rows})


def _account_or_404(slug: str) -> Account:
    account = account_ops.find_account(slug)
    if account is None:
        abort(404, f"account {slug} does not exist")
    return account


def _known(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")


def _string(body: dict[str, Any], name: str) -> str | None:
    """A string field (None when absent or null); its value is never echoed in an error,
    as it may be a secret."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    if CONTROL_CHARS.search(value):
        raise BadRequest(f"{name}: must not contain control characters")
    return value


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The account fields of a body, type-checked (account_ops validates the values)."""
    _known(body, FIELDS)
    values: dict[str, Any] = {}
    for name in body:
        value = body[name]
        if name == "retention_days" and isinstance(value, int | float):
            if isinstance(value, bool):
                raise BadRequest("retention_days: must be a number of days")
            values[name] = value
            continue
        values[name] = _string(body, name)
    return values
