"""`flask webhooks purge` and `flask webhooks forget`: retention and erasure by hand."""

from __future__ import annotations

import getpass

import click

from .accounts import by_slug
from .cli import webhooks_cli
from .erasure import ErasureError, forget
from .filters import FilterError, parse_time
from .retention import accounts_text, purge, retention_groups


@webhooks_cli.command("purge")
@click.option(
    "--older-than",
    help="Finished before: a time ago (90d, 12h) or an ISO date/datetime. Default: RETENTION_DAYS.",
)
@click.option("--include-failed", is_flag=True, help="Also purge failed (dead-lettered) events.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Rows per transaction.")
@click.option(
    "--duty",
    type=click.FloatRange(0, 1, min_open=True),
    help="Most of the wall time spent purging, e.g. 0.5; 1 = flat out (RETENTION_DUTY).",
)
@click.option("--dry-run", is_flag=True, help="Only count the events that would be purged.")
def purge_command(
    older_than: str | None,
    include_failed: bool,
    batch_size: int | None,
    duty: float | None,
    dry_run: bool,
) -> None:
    """Drop the stored copies (bodies, headers, tracebacks, payer data) of old finished events."""
    if older_than is None:  # each account's retention (RETENTION_DAYS unless its own)
        groups = retention_groups()
        if not groups:
            raise click.UsageError("RETENTION_DAYS is 0 (keep everything): give --older-than")
    else:  # every account's events
        try:
            groups = [(parse_time("--older-than", older_than), None)]
        except FilterError as exc:
            raise click.UsageError(str(exc)) from None
    for cutoff, accounts in groups:
        report = purge(
            cutoff,
            batch_size=batch_size,
            include_failed=include_failed,
            dry_run=dry_run,
            duty=duty,
            accounts=accounts,
        )
        whose = "" if accounts is None else f"[{accounts_text(accounts)}] "
        click.echo(("dry run: " if dry_run else "") + whose + report.summary())


@webhooks_cli.command("forget")
@click.option("--email", required=True, help="The payer's e-mail address.")
@click.option("--account", help="Only this account's rows (slug); default: every account's.")
def forget_command(email: str, account: str | None) -> None:
    """Erase a payer's personal data from every table (amounts, statuses and ids stay)."""
    account_id = None
    if account is not None:
        settings = by_slug(account)
        if settings is None:
            raise click.UsageError(f"no account with the slug {account!r}")
        account_id = settings.id
    try:
        report = forget(email, surface="cli", requested_by=_os_user(), account_id=account_id)
    except ErasureError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(report.summary())
    click.echo("The GoHighLevel contact is not touched: erase it in GoHighLevel.")


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
