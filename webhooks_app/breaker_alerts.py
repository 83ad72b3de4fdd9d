"""What a circuit breaker's opening tells the operators (breaker.py): the alert, and for the
default account's refused credentials the pause of the stage in the database."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import current_app

from .pausing import GOHIGHLEVEL, MERCADOPAGO

if TYPE_CHECKING:
    from .breaker import Breaker

# The breaker's own log lines, whichever module writes them.
logger = logging.getLogger("webhooks_app.breaker")

BREAKER_ACTOR = "circuit-breaker"
NAMES = {MERCADOPAGO: "MercadoPago", GOHIGHLEVEL: "GoHighLevel"}
_TOKENS: dict[str, str] = {
    MERCADOPAGO: "MP_ACCESS_TOKEN",
    GOHIGHLEVEL: "GHL_API_TOKEN and GHL_LOCATION_ID",
}


def pause_for_operator(upstream: str, reason: str) -> None:
    """Record the credential failure as a pause of the stage: it survives a Redis flush,
    shows in the admin banner, and only an operator's resume lifts it."""
    from .extensions import db
    from .pausing import pause

    text = (
        f"{NAMES[upstream]} refused our credentials ({reason}). Check "
        f"{_TOKENS[upstream]}, then resume the {upstream} stage."
    )
    try:
        pause(upstream, text[:500], BREAKER_ACTOR)
    except Exception:  # noqa: BLE001 - the Redis state still holds the attempts
        db.session.rollback()
        logger.exception("breaker %s: the stage could not be paused in the database", upstream)


def alert_operator(upstream: str, breaker: Breaker) -> None:
    from .alerts import send_alert

    name = NAMES[upstream]
    if breaker.needs_operator and breaker.scope:
        message = (
            f"{name} refuses the credentials of account {breaker.account} "
            f"({breaker.scope}): {breaker.reason}. That account's processing that needs "
            f"{name} waits until an operator acts: fix its {_TOKENS[upstream]}, then "
            f"`flask webhooks resume --stage {upstream} --account {breaker.account}`. "
            "Other accounts are not affected; its events wait pending."
        )
    elif breaker.needs_operator:
        message = (
            f"{name} refuses our credentials: {breaker.reason}. Processing that needs "
            f"{name} is paused until an operator acts: fix {_TOKENS[upstream]}, then "
            f"`flask webhooks resume --stage {upstream}` (or the admin's Resume button). "
            "Events wait pending; none is dead-lettered meanwhile."
        )
    else:
        whose = f" for account {breaker.account} ({breaker.scope})" if breaker.scope else ""
        message = (
            f"{name} is failing{whose} ({breaker.reason}). Its circuit breaker is open: events "
            f"wait pending instead of spending retries, and one probe call every "
            f"{breaker.cooldown:.0f}s or more (up to "
            f"{current_app.config['BREAKER_MAX_COOLDOWN']:.0f}s) checks whether it is back; "
            "processing resumes by itself when it answers."
        )
    send_alert(message)
