"""`flask webhooks accounts …`: add, list, show, edit, enable/disable, rotate the webhook
secret, issue an API token, delete, re-encrypt, generate a key; and `--account SLUG`, the
option every command that lists or acts on events and resources takes.

Secrets are given as options or, left out, prompted for with hidden input (so they stay out
of the shell's history); no command prints one back: accounts are shown with
`Account.to_dict()`, which only says whether each secret is set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from flask.cli import AppGroup

from . import account_ops, secret_box
from .accounts import Account, AccountError
from .config import ConfigError
from .filters import FilterError, parse_account

accounts_cli = AppGroup(
    "accounts", help="Accounts: one merchant each (MercadoPago application, GHL location)."
)

# On every command that lists or acts on events, payments and other resources.
ACCOUNT_OPTION = click.option(
    "--account", metavar="SLUG", help="Only this account's (see `flask webhooks accounts list`)."
)


def account_id_of(slug: str | None) -> int | None:
    """`--account`'s id (None: every account); an unknown slug is a usage error (exit 2)."""
    try:
        return parse_account(slug)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None


def not_found(what: str, slug: str | None, missing: str = "does not exist") -> click.ClickException:
    """The error (exit 1) for a row that is missing, or another account's than `--account`'s."""
    where = f" in account {slug}" if slug else ""
    return click.ClickException(f"{what} {missing}{where}")


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The settings `add` and `edit` take besides the secrets."""
    options = [
        click.option("--name", help="A name for people (1-255 characters)."),
        click.option("--ghl-location", "ghl_location_id", help="The GoHighLevel location id."),
        click.option("--status-tags", help='As GHL_STATUS_TAGS ("approved=paid,…"); "" clears.'),
        click.option("--tag-mode", help='As GHL_TAG_MODE; "" clears.'),
        click.option("--custom-fields", help='As GHL_CUSTOM_FIELDS; "" clears.'),
        click.option("--retention-days", help='Days kept (0: everything); "" clears.'),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _account(slug: str) -> Account:
    account = account_ops.find_account(slug)
    if account is None:
        raise click.ClickException(f"account {slug} does not exist")
    return account


def _failing(action: Callable[[], Any]) -> Any:
    """Run an account operation; its refusal is a clear error (exit 1), never a traceback."""
    try:
        return action()
    except (AccountError, ConfigError, secret_box.SecretUnreadable) as exc:
        raise click.ClickException(str(exc)) from None


def _print(account: Account) -> None:
    for name, value in account.to_dict().items():
        click.echo(f"{name + ':':<23}{'-' if value is None else value}")


@accounts_cli.command("add")
@click.argument("slug")
@_settings_options
@click.option(
    "--mp-access-token",
    prompt="MercadoPago access token",
    hide_input=True,
    help="Prompted if left out.",
)
@click.option(
    "--webhook-secret",
    help="The secret MercadoPago shows once the account's URL is saved there; usually set "
    "afterwards with `accounts rotate-secret SLUG` (until then the URL answers 401).",
)
@click.option(
    "--ghl-token", prompt="GoHighLevel API token", hide_input=True, help="Prompted if left out."
)
def add_command(
    slug: str, webhook_secret: str | None, mp_access_token: str, ghl_token: str, **settings: Any
) -> None:
    """Add an account; prints the webhook URL path to give MercadoPago."""
    values = {name: value for name, value in settings.items() if value is not None}
    name = values.pop("name", None) or slug
    account = _failing(
        lambda: account_ops.create_account(
            slug,
            name,
            mp_access_token=mp_access_token,
            mp_webhook_secret=webhook_secret,
            ghl_api_token=ghl_token,
            **values,
        )
    )
    click.echo(f"account {account.slug} added (id {account.id})")
    click.echo(
        f"webhook URL for MercadoPago: https://<this host>{account.to_dict()['webhook_path']}"
    )
    if not webhook_secret:
        click.echo(
            "next: paste that URL into the application's Webhooks settings in MercadoPago "
            "(Your integrations), then give the secret it shows to "
            f"`flask webhooks accounts rotate-secret {account.slug}`"
        )


@accounts_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/accounts.")
def list_command(as_json: bool) -> None:
    """Every account (no secrets: only whether each is set)."""
    accounts = [account.to_dict() for account in account_ops.list_accounts()]
    if as_json:
        click.echo(json.dumps({"accounts": accounts}, indent=2))
        return
    click.echo(f"{'ID':>4}  {'SLUG':<20}  {'ENABLED':<7}  {'SECRETS':<7}  {'TOKEN':<5}  NAME")
    for data in accounts:
        secrets_set = all(
            data[f"{name}_set"]
            for name in ("mp_access_token", "mp_webhook_secret", "ghl_api_token")
        )
        click.echo(
            f"{data['id']:>4}  {data['slug']:<20}  {'yes' if data['enabled'] else 'no':<7}  "
            f"{'set' if secrets_set else 'env' if data['id'] == 1 else 'MISSING':<7}  "
            f"{'yes' if data['api_token_set'] else '-':<5}  {data['name']}"
        )
    click.echo(f"{len(accounts)} account(s)")


@accounts_cli.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/accounts/SLUG.")
def show_command(slug: str, as_json: bool) -> None:
    """One account's settings (secrets: only whether each is set)."""
    account = _account(slug)
    if as_json:
        click.echo(json.dumps(account.to_dict(), indent=2))
        return
    _print(account)


@accounts_cli.command("edit")
@click.argument("slug")
@_settings_options
@click.option("--mp-access-token", help="A new MercadoPago access token.")
@click.option("--ghl-token", help="A new GoHighLevel API token.")
@click.option(
    "--prompt-secrets", is_flag=True, help="Ask for the new tokens with hidden input instead."
)
def edit_command(
    slug: str,
    mp_access_token: str | None,
    ghl_token: str | None,
    prompt_secrets: bool,
    **settings: Any,
) -> None:
    """Change an account's settings (the webhook secret: `rotate-secret`)."""
    account = _account(slug)
    if prompt_secrets:
        ask = {"hide_input": True, "default": "", "show_default": False}
        mp_access_token = click.prompt("MercadoPago access token (empty: unchanged)", **ask)
        ghl_token = click.prompt("GoHighLevel API token (empty: unchanged)", **ask)
    values = {name: value for name, value in settings.items() if value is not None}
    values.update(mp_access_token=mp_access_token, ghl_api_token=ghl_token)
    _failing(lambda: account_ops.update_account(account, **values))
    click.echo(f"account {slug} updated")
    _print(account)


@accounts_cli.command("disable")
@click.argument("slug")
def disable_command(slug: str) -> None:
    """Disable: its webhook URL answers 404 and its API token is refused."""
    _failing(lambda: account_ops.set_enabled(_account(slug), False))
    click.echo(f"account {slug} disabled (events it stored before still run)")


@accounts_cli.command("enable")
@click.argument("slug")
def enable_command(slug: str) -> None:
    """Enable a disabled account."""
    _failing(lambda: account_ops.set_enabled(_account(slug), True))
    click.echo(f"account {slug} enabled")


@accounts_cli.command("rotate-secret")
@click.argument("slug")
@click.option("--secret", help="The new webhook secret (prompted for if left out).")
@click.option(
    "--finish",
    is_flag=True,
    help="Alone: stop accepting the previous secret(s). With --secret: replace at once.",
)
def rotate_secret_command(slug: str, secret: str | None, finish: bool) -> None:
    """Rotate the webhook secret: the new one and the previous one are both accepted until
    the rotation is finished (`--finish`, once MercadoPago signs with the new one)."""
    account = _account(slug)
    if finish and secret is None:
        _failing(lambda: account_ops.finish_webhook_secret_rotation(account))
        click.echo(f"account {slug}: rotation finished, only the newest secret is accepted")
        return
    if secret is None:
        secret = click.prompt("New webhook secret", hide_input=True)
    new_secret = secret
    first = not account.has_secret("mp_webhook_secret")
    _failing(
        lambda: account_ops.rotate_webhook_secret(account, new_secret, keep_previous=not finish)
    )
    if first:
        click.echo(f"account {slug}: webhook secret set; its notifications are now verified")
    elif finish:
        click.echo(f"account {slug}: webhook secret replaced")
    else:
        click.echo(
            f"account {slug}: new webhook secret accepted along with the previous one; once "
            "MercadoPago signs with it, finish the rotation: "
            f"`flask webhooks accounts rotate-secret {slug} --finish`"
        )


@accounts_cli.command("token")
@click.argument("slug")
@click.option("--revoke", is_flag=True, help="Revoke the account's token instead.")
def token_command(slug: str, revoke: bool) -> None:
    """Issue an API token that sees this account only, printed once (the previous one stops
    working)."""
    account = _account(slug)
    if revoke:
        _failing(lambda: account_ops.revoke_api_token(account))
        click.echo(f"account {slug}: API token revoked")
        return
    token = _failing(lambda: account_ops.issue_api_token(account))
    click.echo(f"API token of account {slug} (shown once, only its hash is stored):")
    click.echo(token)


@accounts_cli.command("delete")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Really delete it, with everything stored for it.")
def delete_command(slug: str, yes: bool) -> None:
    """Delete an account and all of its events, payments and resources."""
    account = _account(slug)
    if not yes:
        raise click.UsageError(f"this deletes account {slug} and all of its data: add --yes")
    report = _failing(lambda: account_ops.delete_account(account))
    click.echo(report.summary())


@accounts_cli.command("reencrypt")
def reencrypt_command() -> None:
    """Encrypt every stored secret under the first key of ACCOUNT_SECRET_KEYS (after putting
    a new key first); then the old key can be removed."""
    count = _failing(account_ops.reencrypt_all)
    click.echo(f"re-encrypted the secrets of {count} account(s) under the newest key")


@accounts_cli.command("generate-key")
def generate_key_command() -> None:
    """Print a new key for ACCOUNT_SECRET_KEYS (put it first, then run `reencrypt`)."""
    click.echo(secret_box.generate_key())
