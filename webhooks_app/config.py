"""Configuration: the only module that reads the environment.

`APP_ENV` picks a class (development, production, testing); every setting can
be overridden by an environment variable of the same name. A `.env` file in
the project root is read in development (real environment variables win).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Read `.env` before the classes below read the environment; real variables win.
load_dotenv(PROJECT_ROOT / ".env", override=False)

DEFAULT_STATUS_TAGS = {
    "approved": "mp-payment-approved",
    "authorized": "mp-payment-authorized",
    "pending": "mp-payment-pending",
    "in_process": "mp-payment-in-process",
    "in_mediation": "mp-payment-in-mediation",
    "rejected": "mp-payment-rejected",
    "cancelled": "mp-payment-cancelled",
    "refunded": "mp-payment-refunded",
    "charged_back": "mp-payment-charged-back",
}


class ConfigError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None


# Where every process of this service writes its Prometheus metrics (multiprocess mode).
METRICS_DIR = _env("PROMETHEUS_MULTIPROC_DIR", str(PROJECT_ROOT / "instance" / "metrics"))


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


class Config:
    """Settings shared by every environment, each overridable from the environment."""

    ENV_NAME = "base"
    SANDBOX_URL = _env("SANDBOX_URL", "http://127.0.0.1:5001")

    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        _env("DATABASE_URL", f"sqlite:///{PROJECT_ROOT / 'instance' / 'webhooks.db'}")
    )
    REDIS_URL = _env("REDIS_URL", "redis://localhost:6379/0")
    # Short Redis timeouts on the request path: a webhook must not hang while
    # Redis is down; the event is already committed and is picked up later.
    REDIS_SOCKET_TIMEOUT = _env_float("REDIS_SOCKET_TIMEOUT", 0.5)
    # Most notifications one transaction stores when concurrent requests share it
    # (ingest.EventWriter); a bound on how long a request can wait for others' rows.
    INGEST_MAX_BATCH = int(_env_float("INGEST_MAX_BATCH", 64))
    RQ_QUEUE_NAME = _env("RQ_QUEUE_NAME", "webhooks")
    RQ_JOB_TIMEOUT = int(_env_float("RQ_JOB_TIMEOUT", 180))
    RQ_WORKER_CLASS = _env("RQ_WORKER_CLASS", "rq.worker.SimpleWorker")

    MP_ACCESS_TOKEN = _env("MP_ACCESS_TOKEN")
    MP_WEBHOOK_SECRET = _env("MP_WEBHOOK_SECRET")
    MP_API_BASE_URL = _env("MP_API_BASE_URL", "https://api.mercadopago.com")
    MP_ACCEPT_IPN = _env_bool("MP_ACCEPT_IPN", True)
    # Production refuses to start without MP_WEBHOOK_SECRET unless this is turned off.
    MP_VERIFY_SIGNATURES = _env_bool("MP_VERIFY_SIGNATURES", True)
    # Max age in seconds of a signature's ts; 0 = not checked (the default: a
    # redelivery may carry its original ts, and a replayed notification does no
    # harm because the pipeline trusts only what it reads from the API).
    MP_SIGNATURE_TOLERANCE = _env_float("MP_SIGNATURE_TOLERANCE", 0)

    GHL_API_TOKEN = _env("GHL_API_TOKEN")
    GHL_LOCATION_ID = _env("GHL_LOCATION_ID")
    GHL_API_BASE_URL = _env("GHL_API_BASE_URL", "https://services.leadconnectorhq.com")
    GHL_STATUS_TAGS = parse_status_tags(_env("GHL_STATUS_TAGS"))
    # The tag a chargeback's payer gets in GoHighLevel; empty: no tag.
    CHARGEBACK_TAG = _env("CHARGEBACK_TAG", "mp-chargeback")

    HTTP_TIMEOUT = _env_float("HTTP_TIMEOUT", 10.0)
    # GoHighLevel allows 100 requests per 10 s per location. Shared by every worker,
    # and a little under GHL's own so that network jitter never tips a call over it.
    GHL_RATE_LIMIT = _env("GHL_RATE_LIMIT", "90/10")
    # Longest a worker waits for a GHL slot (or a 429's Retry-After) within one attempt.
    GHL_MAX_WAIT = _env_float("GHL_MAX_WAIT", 20.0)
    RETRY_DELAYS = parse_retry_delays(_env("RETRY_DELAYS", "60,300,900"))
    # rq-scheduler polls this often; a 60 s retry fires within about this long of its time.
    SCHEDULER_INTERVAL = _env_float("SCHEDULER_INTERVAL", 1.0)
    # A claim on an event lasts this long and is renewed between pipeline steps; a
    # worker that dies loses it, and the reconciler retries the event. Must exceed
    # every HTTP timeout (and GHL_MAX_WAIT) and stay below RQ_JOB_TIMEOUT.
    LEASE_SECONDS = _env_float("LEASE_SECONDS", 40.0)
    # How often scheduler.py looks for due events missing from Redis and expired leases.
    RECONCILE_INTERVAL = _env_float("RECONCILE_INTERVAL", 5.0)
    # A due event is re-enqueued only once overdue by this much: the normal path goes first.
    RECONCILE_GRACE = _env_float("RECONCILE_GRACE", 10.0)
    # Asking MercadoPago for payments changed lately, in case a notification never came.
    CATCH_UP_INTERVAL = _env_float("CATCH_UP_INTERVAL", 600.0)
    CATCH_UP_LOOKBACK = _env_float("CATCH_UP_LOOKBACK", 6 * 3600.0)
    SQLITE_BUSY_TIMEOUT = _env_float("SQLITE_BUSY_TIMEOUT", 30.0)

    LOG_FILE = _env("LOG_FILE", str(PROJECT_ROOT / "logs" / "webhook.log"))
    LOG_LEVEL = _env("LOG_LEVEL", "INFO")
    LOG_FORMAT = _env("LOG_FORMAT", "json")  # json lines, or text

    API_TOKEN = _env("API_TOKEN")

    # OpenTelemetry traces, off unless a collector is set (OTLP over HTTP: <endpoint>/v1/traces).
    OTEL_EXPORTER_OTLP_ENDPOINT = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    OTEL_SERVICE_NAME = _env("OTEL_SERVICE_NAME", "mp-webhooks")

    # Alerts (dead letters, old backlog): a Slack-compatible webhook and/or e-mail.
    ALERT_WEBHOOK_URL = _env("ALERT_WEBHOOK_URL")
    ALERT_EMAIL_TO = _env("ALERT_EMAIL_TO")
    ALERT_EMAIL_FROM = _env("ALERT_EMAIL_FROM", "webhooks@localhost")
    SMTP_HOST = _env("SMTP_HOST", "localhost")
    SMTP_PORT = int(_env_float("SMTP_PORT", 587))
    SMTP_USERNAME = _env("SMTP_USERNAME")
    SMTP_PASSWORD = _env("SMTP_PASSWORD")
    SMTP_STARTTLS = _env_bool("SMTP_STARTTLS", True)
    # At most one dead-letter summary per interval, however many events failed.
    ALERT_INTERVAL = _env_float("ALERT_INTERVAL", 300.0)
    ALERT_PENDING_AGE = _env_float("ALERT_PENDING_AGE", 1800.0)
    ALERT_REPEAT = _env_float("ALERT_REPEAT", 3600.0)
    ADMIN_USERNAME = _env("ADMIN_USERNAME")
    ADMIN_PASSWORD = _env("ADMIN_PASSWORD")

    # MercadoPago notifications are a few hundred bytes; anything near this is not one.
    MAX_CONTENT_LENGTH = int(_env_float("MAX_WEBHOOK_BYTES", 64 * 1024))
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True}

    REQUIRED_SETTINGS: tuple[str, ...] = ()
    REQUIRE_SIGNATURES = False

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        """Raise ConfigError naming every required setting that is missing or inconsistent."""
        required = list(cls.REQUIRED_SETTINGS)
        if cls.REQUIRE_SIGNATURES and settings.get("MP_VERIFY_SIGNATURES"):
            required.append("MP_WEBHOOK_SECRET")
        missing = [name for name in required if not settings.get(name)]
        if missing:
            hint = (
                " (or set MP_VERIFY_SIGNATURES=false to accept unsigned notifications)"
                if "MP_WEBHOOK_SECRET" in missing
                else ""
            )
            raise ConfigError(
                f"{cls.ENV_NAME} configuration is missing: {', '.join(missing)}{hint}. "
                "Set them as environment variables (see README, 'Configuration')."
            )
        lease, job_timeout = settings["LEASE_SECONDS"], settings["RQ_JOB_TIMEOUT"]
        longest_wait = max(settings["HTTP_TIMEOUT"], settings["GHL_MAX_WAIT"])
        if not longest_wait < lease < job_timeout:
            raise ConfigError(
                f"LEASE_SECONDS ({lease}) must be longer than HTTP_TIMEOUT and GHL_MAX_WAIT "
                f"({longest_wait}) and shorter than RQ_JOB_TIMEOUT ({job_timeout})"
            )
        parse_rate_limit(settings["GHL_RATE_LIMIT"])


class DevelopmentConfig(Config):
    """Runs on one machine against the built-in sandbox for both APIs."""

    ENV_NAME = "development"
    LOG_FORMAT = _env("LOG_FORMAT", "text")
    MP_ACCESS_TOKEN = _env("MP_ACCESS_TOKEN", "sandbox-mp-token")
    MP_WEBHOOK_SECRET = _env("MP_WEBHOOK_SECRET", "sandbox-webhook-secret")
    MP_API_BASE_URL = _env("MP_API_BASE_URL", Config.SANDBOX_URL)
    GHL_API_TOKEN = _env("GHL_API_TOKEN", "sandbox-ghl-token")
    GHL_LOCATION_ID = _env("GHL_LOCATION_ID", "sandbox-location")
    GHL_API_BASE_URL = _env("GHL_API_BASE_URL", Config.SANDBOX_URL)


class ProductionConfig(Config):
    """Real APIs; refuses to start without the credentials it needs."""

    ENV_NAME = "production"
    REQUIRED_SETTINGS = ("MP_ACCESS_TOKEN", "GHL_API_TOKEN", "GHL_LOCATION_ID")
    REQUIRE_SIGNATURES = True


class TestingConfig(Config):
    """Used by the test-suite; the fixtures point it at a private database and sandbox."""

    ENV_NAME = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        _env("TEST_DATABASE_URL", "sqlite:///" + str(PROJECT_ROOT / "instance" / "test.db"))
    )
    REDIS_URL = _env("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    RQ_QUEUE_NAME = "webhooks-test"
    MP_ACCESS_TOKEN = "test-mp-token"
    MP_WEBHOOK_SECRET = "test-webhook-secret"
    GHL_API_TOKEN = "test-ghl-token"
    GHL_LOCATION_ID = "test-location"
    API_TOKEN = "test-api-token"
    # Seconds, not minutes; the fault tests' worker processes set their own through the env.
    RETRY_DELAYS = parse_retry_delays(_env("TEST_RETRY_DELAYS", "1,2,3"))
    GHL_RATE_LIMIT = "off"  # the tests that exercise the limiter turn it on
    HTTP_TIMEOUT = _env_float("TEST_HTTP_TIMEOUT", 5.0)
    LOG_FILE = None


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}


def config_class(name: str | None = None) -> type[Config]:
    """The Config class for `name`, or for `APP_ENV` (default development)."""
    name = name or _env("APP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"APP_ENV must be one of {sorted(CONFIGS)}, got {name!r}") from None
