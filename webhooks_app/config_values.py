"""The settings' values as the environment spells them, parsed: tag mappings, custom
fields, rate limits, retry delays, database URLs. Pure functions, no environment read
(config.py alone reads it); an account's own settings (accounts.py) use the same ones."""

from __future__ import annotations

DEFAULT_STATUS_TAGS = {
    "approved": "mp-payment-approved",
    "authorized": "mp-payment-authorized",
    "pending": "mp-payment-pending",
    "in_process": "mp-payment-in-process",
    "in_mediation": "mp-payment-in-mediation",
    "rejected": "mp-payment-rejected",
    "cancelled": "mp-payment-cancelled",
    "refunded": "mp-payment-refunded",
    # Not a MercadoPago status: an `approved` payment with part of it refunded
    # (`crm.gohighlevel.effective_status`); it takes the place of approved's tag.
    "partially_refunded": "mp-payment-partially-refunded",
    "charged_back": "mp-payment-charged-back",
}

# GHL_TAG_MODE: `replace` keeps only the tag of each payment's current status on the
# contact; `accumulate` adds tags and never removes one (the behaviour before 2026-12).
TAG_MODES = ("replace", "accumulate")
# What GHL_CUSTOM_FIELDS can write to a contact's custom fields (ours=their key).
CUSTOM_FIELD_VALUES = (
    "payment_id",
    "status",
    "amount",
    "currency",
    "date",
    "external_reference",
)


class ConfigError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


def parse_retry_delays(value: str) -> tuple[int, ...]:
    """Parse `RETRY_DELAYS` ("60,300,900") into whole seconds."""
    try:
        delays = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"RETRY_DELAYS must be comma-separated whole seconds, got {value!r}"
        ) from None
    if any(delay < 0 for delay in delays):
        raise ConfigError(f"RETRY_DELAYS cannot contain negative delays: {value!r}")
    return delays


def parse_status_tags(value: str | None) -> dict[str, str]:
    """Parse `GHL_STATUS_TAGS` ("approved=paid,rejected=payment-failed") over the defaults."""
    tags = dict(DEFAULT_STATUS_TAGS)
    for item in (value or "").split(","):
        if not item.strip():
            continue
        status, sep, tag = item.partition("=")
        if not sep or not status.strip():
            raise ConfigError(f"GHL_STATUS_TAGS entries look like status=tag, got {item!r}")
        if tag.strip():
            tags[status.strip()] = tag.strip()
        else:  # "status=" switches the tag for that status off
            tags.pop(status.strip(), None)
    return tags


def parse_tag_mode(value: str | None) -> str:
    """Parse `GHL_TAG_MODE`: replace (the default) or accumulate."""
    mode = (value or "replace").strip().lower()
    if mode not in TAG_MODES:
        raise ConfigError(f"GHL_TAG_MODE must be one of {', '.join(TAG_MODES)}, got {value!r}")
    return mode


def parse_custom_fields(value: str | None) -> dict[str, str]:
    """Parse `GHL_CUSTOM_FIELDS` ("payment_id=contact.mp_last_payment,status=contact.mp_status")
    into {our value: the location's custom field key (or id)}; empty: none written."""
    fields: dict[str, str] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        ours, sep, key = item.partition("=")
        ours, key = ours.strip(), key.strip()
        if not sep or not key:
            raise ConfigError(f"GHL_CUSTOM_FIELDS entries look like value=field_key, got {item!r}")
        if ours not in CUSTOM_FIELD_VALUES:
            raise ConfigError(
                f"GHL_CUSTOM_FIELDS: {ours!r} is not one of {', '.join(CUSTOM_FIELD_VALUES)}"
            )
        fields[ours] = key
    return fields


def parse_rate_limit(value: str | None) -> tuple[int, float] | None:
    """Parse `GHL_RATE_LIMIT` ("100/10": requests per seconds); "off" or "" disables it."""
    if not value or value.strip().lower() in {"off", "0", "none"}:
        return None
    requests, sep, seconds = value.partition("/")
    try:
        limit = (int(requests), float(seconds))
    except ValueError:
        limit = (0, 0.0)
    if not sep or limit[0] < 1 or limit[1] <= 0:
        raise ConfigError(f"GHL_RATE_LIMIT looks like 100/10 (requests/seconds), got {value!r}")
    return limit


def normalise_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` form and use the psycopg 3 driver for PostgreSQL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


