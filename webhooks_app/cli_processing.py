"""`flask webhooks pause|resume|status`: hold processing, let it go, see why it is held."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from .cli import webhooks_cli
from .pausing import STAGES, PauseError, pause, resume, status

STAGE_OPTION = click.option(
    "--stage",
    type=click.Choice(STAGES),
    default="all",
    show_default=True,
    help="all, or one upstream: mercadopago, gohighlevel.",
)


def cli_actor(by: str | None) -> str:
    if by:
        return f"cli ({by})"
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@webhooks_cli.command("pause")
@STAGE_OPTION
@click.option("--reason", required=True, help="Why (shown in the admin, API and status).")
@click.option("--by", help="Who is pausing (default: the OS user).")
def pause_command(stage: str, reason: str, by: str | None) -> None:
    """Pause processing (events are still received and stored; they wait pending)."""
    try:
        changed = pause(stage, reason, cli_actor(by))
    except PauseError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"stage {stage} paused" if changed else f"stage {stage} was already paused")
    _print_status(status())


@webhooks_cli.command("resume")
@STAGE_OPTION
@click.option("--by", help="Who is resuming (default: the OS user).")
@click.option(
    "--account",
    help="Only this account (slug): close its circuit breakers of the stage, queue its events.",
)
def resume_command(stage: str, by: str | None, account: str | None) -> None:
    """Resume processing (all: every pause) and queue what waited, in received order."""
    try:
        report = resume(stage, cli_actor(by), account=account)
    except PauseError as exc:
        raise click.UsageError(str(exc)) from None
    if report.account is not None:
        click.echo(f"account {report.account}: stage {stage}")
    elif report.resumed:
        click.echo(f"resumed: {', '.join(report.resumed)}")
    else:
        click.echo(f"stage {stage} was not paused")
    if report.breakers_reset:
        click.echo(f"breakers closed: {', '.join(report.breakers_reset)}")
    click.echo(f"enqueued {report.enqueued} due event(s)")
    if report.redis_error:
        click.echo(f"Redis unavailable ({report.redis_error}): the rest wait for the reconciler")
    _print_status(status())


@webhooks_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/processing.")
def status_command(as_json: bool) -> None:
    """Paused stages (who, when, why), circuit breakers and the latest pauses and resumes."""
    data = status()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    _print_status(data)


def _print_status(data: dict[str, Any]) -> None:
    for stage, state in data["stages"].items():
        if state["paused"]:
            click.echo(
                f"{stage:<12} PAUSED by {state['paused_by']} at {state['paused_at']}: "
                f"{state['reason']}"
            )
        else:
            click.echo(f"{stage:<12} running")
    for upstream, breaker in data["breakers"].items():
        line = f"breaker {upstream:<12} {breaker['state']}"
        if breaker["error"]:
            line += f" ({breaker['error']})"
        elif breaker["state"] != "closed":
            until = "an operator resumes" if breaker["needs_operator"] else breaker["open_until"]
            line += f" since {breaker['opened_at']} until {until}: {breaker['reason']}"
        if breaker.get("scope"):  # another account's: say whose
            line += f" (accounts: {', '.join(breaker['accounts']) or '-'})"
        if breaker["openings"] is not None:
            line += f" [opened {breaker['openings']}x, closed {breaker['closings']}x]"
        click.echo(line)
    if data["history"]:
        click.echo("history (newest first):")
    for entry in data["history"]:
        reason = f": {entry['reason']}" if entry["reason"] else ""
        click.echo(
            f"  {entry['at']} {entry['action']:<6} {entry['stage']} by {entry['actor']}{reason}"
        )
