"""Configuration: the only module that reads the environment.

`APP_ENV` picks a class (development, production, testing); every setting can
be overridden by an environment variable of the same name. A `.env` file in
the project root is read in development (real environment variables win).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

# The values' parsers (and ConfigError) live in config_values; imported from here as before.
from .config_values import (
    CUSTOM_FIELD_VALUES,
    DEFAULT_STATUS_TAGS,
    TAG_MODES,
    ConfigError,
    normalise_database_url,
    parse_custom_fields,
    parse_rate_limit,
    parse_retry_delays,
    parse_status_tags,
    parse_tag_mode,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Read `.env` before the classes below read the environment; real variables win.
load_dotenv(PROJECT_ROOT / ".env", override=False)

__all__ = [
    "CUSTOM_FIELD_VALUES",
    "DEFAULT_STATUS_TAGS",
    "TAG_MODES",
    "ConfigError",
    "normalise_database_url",
    "parse_custom_fields",
    "parse_rate_limit",
    "parse_retry_delays",
    "parse_status_tags",
    "parse_tag_mode",
]


# Variables an earlier version read, and what replaced them: set, they are said to be ignored.
RETIRED_SETTINGS = {
    "RETENTION_BATCH_PAUSE": "RETENTION_DUTY (a fraction of the purge's time; see README)",
}


def retired_settings_in_use() -> list[str]:
    """A warning for each retired variable still set in the environment."""
    return [
        f"{name} is set but no longer read; use {successor}"
        for name, successor in RETIRED_SETTINGS.items()
        if _env(name) is not None
    ]


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
    # One secret, or several comma-separated (the newest first) while rotating: a
    # notification signed with any of them is accepted (signatures.verify_signature).
    MP_WEBHOOK_SECRET = _env("MP_WEBHOOK_SECRET")
    MP_API_BASE_URL = _env("MP_API_BASE_URL", "https://api.mercadopago.com")
    # IPN is unsigned: anyone can send one, and each costs an API call with our token.
    # Accepted in development and tests; production refuses it unless turned on.
    MP_ACCEPT_IPN = _env_bool("MP_ACCEPT_IPN", True)
    # Production refuses to start without MP_WEBHOOK_SECRET unless this is turned off.
    MP_VERIFY_SIGNATURES = _env_bool("MP_VERIFY_SIGNATURES", True)
    # Max distance in seconds between a signature's ts and now; 0 = not checked
    # (development and tests). Production checks it: without it, one captured
    # signature can be replayed for ever.
    MP_SIGNATURE_TOLERANCE = _env_float("MP_SIGNATURE_TOLERANCE", 0)

    GHL_API_TOKEN = _env("GHL_API_TOKEN")
    GHL_LOCATION_ID = _env("GHL_LOCATION_ID")
    GHL_API_BASE_URL = _env("GHL_API_BASE_URL", "https://services.leadconnectorhq.com")
    GHL_STATUS_TAGS = parse_status_tags(_env("GHL_STATUS_TAGS"))
    GHL_TAG_MODE = parse_tag_mode(_env("GHL_TAG_MODE"))
    GHL_CUSTOM_FIELDS = parse_custom_fields(_env("GHL_CUSTOM_FIELDS"))
    # The tag a chargeback's payer gets in GoHighLevel; empty: no tag.
    CHARGEBACK_TAG = _env("CHARGEBACK_TAG", "mp-chargeback")

    HTTP_TIMEOUT = _env_float("HTTP_TIMEOUT", 10.0)
    # GoHighLevel allows 100 requests per 10 s per location. Shared by every worker,
    # and a little under GHL's own so that network jitter never tips a call over it.
    # Counted per second (9/1: never more than 90 in any 10 s), not per 10 s: a 10-s window
    # lets one location's backlog spend its 90 calls in a second, then hold every worker
    # asleep in its jobs for the other nine, and other accounts' events wait behind them
    # (bench/fairness.py: account B's delay p100 5.4 s at 90/10, 0.6 s at 9/1).
    GHL_RATE_LIMIT = _env("GHL_RATE_LIMIT", "9/1")
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
    # Pause/resume (pausing.py): how long a worker trusts its copy of the paused stages.
    PAUSE_CACHE_SECONDS = _env_float("PAUSE_CACHE_SECONDS", 5.0)
    # Circuit breakers (breaker.py): this many upstream failures in a row within the
    # window open the upstream's breaker (0 = breakers off); 401/403s open it after
    # BREAKER_AUTH_THRESHOLD, until an operator resumes. Cool-downs double up to the cap.
    BREAKER_THRESHOLD = int(_env_float("BREAKER_THRESHOLD", 10))
    BREAKER_AUTH_THRESHOLD = int(_env_float("BREAKER_AUTH_THRESHOLD", 3))
    BREAKER_WINDOW = _env_float("BREAKER_WINDOW", 60.0)
    BREAKER_COOLDOWN = _env_float("BREAKER_COOLDOWN", 30.0)
    BREAKER_MAX_COOLDOWN = _env_float("BREAKER_MAX_COOLDOWN", 600.0)

    # Retention: finished events older than this lose their stored copies (bodies, headers,
    # tracebacks) and their payments' raw copy its personal data; 0 keeps everything.
    RETENTION_DAYS = _env_float("RETENTION_DAYS", 90.0)
    # scheduler.py purges in batches of RETENTION_BATCH_SIZE rows (one short transaction
    # each), in rounds of at most RETENTION_ROUND_SECONDS so that the loop's other tasks
    # (rq-scheduler's moves, the reconciler) are not held up; rounds follow each other while
    # rows remain, then come every RETENTION_INTERVAL seconds.
    RETENTION_INTERVAL = _env_float("RETENTION_INTERVAL", 300.0)
    RETENTION_BATCH_SIZE = int(_env_float("RETENTION_BATCH_SIZE", 500))
    RETENTION_ROUND_SECONDS = _env_float("RETENTION_ROUND_SECONDS", 2.0)
    # The most of the wall time the purge spends in batches (it sleeps in proportion to
    # each batch's duration): what keeps ingestion going while it runs (BENCHMARKS.md).
    RETENTION_DUTY = _env_float("RETENTION_DUTY", 0.5)
    # Mask the payer's e-mail, identification and phone in the stored payment copies.
    PII_MASKING = _env_bool("PII_MASKING", False)

    LOG_FILE = _env("LOG_FILE", str(PROJECT_ROOT / "logs" / "webhook.log"))
    LOG_LEVEL = _env("LOG_LEVEL", "INFO")
    LOG_FORMAT = _env("LOG_FORMAT", "json")  # json lines, or text

    API_TOKEN = _env("API_TOKEN")

    # Accounts (accounts.py): Fernet keys, comma-separated and the newest first, that encrypt
    # the accounts' secrets at rest (secret_box.py). Development and tests use a fixed, public
    # key when it is unset; production needs it as soon as an account has a secret.
    ACCOUNT_SECRET_KEYS = _env("ACCOUNT_SECRET_KEYS")
    ACCOUNT_DEVELOPMENT_KEY = True
    # How long a process trusts its copy of an account's settings (0: read every time).
    ACCOUNT_CACHE_SECONDS = _env_float("ACCOUNT_CACHE_SECONDS", 5.0)
    # How often a worker looks for accounts created since it started (their queues).
    ACCOUNT_QUEUE_REFRESH = _env_float("ACCOUNT_QUEUE_REFRESH", 5.0)

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
    # Failed Basic logins (admin, /rq) allowed per client address and per username
    # in a moving window, counted in Redis; "off" disables the throttle.
    LOGIN_FAILURE_LIMIT = _env("LOGIN_FAILURE_LIMIT", "10/minute")

    # The admin's session cookie (it holds the CSRF token): never sent on a cross-site
    # subrequest or POST; Secure in production, where the service is reached over HTTPS.
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", False)
    # How many proxies in front rewrite X-Forwarded-For/-Proto/-Port (Heroku's router: 1).
    # 0 = those headers are the client's own and are not believed.
    PROXY_FIX_HOPS = int(_env_float("PROXY_FIX_HOPS", 0))

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
        tolerance = settings["MP_SIGNATURE_TOLERANCE"]
        # NaN would switch the check off in silence (every comparison with it is false).
        if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
            raise ConfigError(
                "MP_SIGNATURE_TOLERANCE must be a finite number of seconds >= 0 "
                f"(0 = not checked), got {tolerance!r}"
            )
        if settings["RETENTION_DAYS"] < 0 or settings["RETENTION_BATCH_SIZE"] < 1:
            raise ConfigError("RETENTION_DAYS must be >= 0 and RETENTION_BATCH_SIZE >= 1")
        if not 0 < settings["RETENTION_DUTY"] <= 1:
            raise ConfigError(
                "RETENTION_DUTY must be a fraction > 0 and <= 1, "
                f"got {settings['RETENTION_DUTY']!r}"
            )


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
    ACCOUNT_DEVELOPMENT_KEY = False
    # MercadoPago is discontinuing IPN, and cannot sign it (README, "Signatures").
    MP_ACCEPT_IPN = _env_bool("MP_ACCEPT_IPN", False)
    # Five minutes, as MercadoPago's SDKs suggest (ts in seconds or milliseconds).
    MP_SIGNATURE_TOLERANCE = _env_float("MP_SIGNATURE_TOLERANCE", 300)
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)
    PROXY_FIX_HOPS = int(_env_float("PROXY_FIX_HOPS", 1))


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
    # Workers see a pause at once; breakers cool down in seconds (processes set their own).
    PAUSE_CACHE_SECONDS = _env_float("PAUSE_CACHE_SECONDS", 0.0)
    ACCOUNT_CACHE_SECONDS = _env_float("ACCOUNT_CACHE_SECONDS", 0.0)
    ACCOUNT_QUEUE_REFRESH = _env_float("ACCOUNT_QUEUE_REFRESH", 0.5)
    BREAKER_COOLDOWN = _env_float("BREAKER_COOLDOWN", 1.0)
    BREAKER_MAX_COOLDOWN = _env_float("BREAKER_MAX_COOLDOWN", 4.0)


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
