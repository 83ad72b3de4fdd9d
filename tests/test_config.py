"""Configuration parsing and start-up checks."""

import pytest

from webhooks_app import create_app
from webhooks_app.config import (
    DEFAULT_STATUS_TAGS,
    ConfigError,
    ProductionConfig,
    config_class,
    normalise_database_url,
    parse_custom_fields,
    parse_rate_limit,
    parse_retry_delays,
    parse_status_tags,
    parse_tag_mode,
    retired_settings_in_use,
)


def test_heroku_postgres_url_is_accepted():
    assert normalise_database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalise_database_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_retry_delays():
    assert parse_retry_delays("60,300,900") == (60, 300, 900)
    assert parse_retry_delays(" 1, 2 ") == (1, 2)
    assert parse_retry_delays("") == ()
    with pytest.raises(ConfigError, match="RETRY_DELAYS"):
        parse_retry_delays("1,a")
    with pytest.raises(ConfigError, match="negative"):
        parse_retry_delays("-1")


def test_status_tags_override_and_disable():
    tags = parse_status_tags("approved=paid, rejected=")
    assert tags["approved"] == "paid"
    assert "rejected" not in tags
    assert tags["refunded"] == DEFAULT_STATUS_TAGS["refunded"]
    with pytest.raises(ConfigError, match="GHL_STATUS_TAGS"):
        parse_status_tags("approved")


def test_unknown_app_env_is_a_clear_error():
    with pytest.raises(ConfigError, match="APP_ENV"):
        config_class("staging")


def test_production_without_credentials_fails_at_start_up():
    settings = {"MP_ACCESS_TOKEN": None, "GHL_API_TOKEN": None, "GHL_LOCATION_ID": None}
    with pytest.raises(ConfigError) as excinfo:
        create_app(ProductionConfig, settings)
    message = str(excinfo.value)
    assert "MP_ACCESS_TOKEN" in message and "GHL_API_TOKEN" in message
    assert "GHL_LOCATION_ID" in message


PRODUCTION = {
    "MP_ACCESS_TOKEN": "a",
    "GHL_API_TOKEN": "b",
    "GHL_LOCATION_ID": "c",
    "MP_WEBHOOK_SECRET": "s",
    "LOG_FILE": None,
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
}


def test_production_with_credentials_starts():
    app = create_app(ProductionConfig, PRODUCTION)
    assert app.config["MP_API_BASE_URL"] == "https://api.mercadopago.com"


def test_production_requires_the_webhook_secret_unless_signatures_are_disabled():
    with pytest.raises(ConfigError, match="MP_WEBHOOK_SECRET.*MP_VERIFY_SIGNATURES=false"):
        create_app(ProductionConfig, {**PRODUCTION, "MP_WEBHOOK_SECRET": None})
    app = create_app(
        ProductionConfig, {**PRODUCTION, "MP_WEBHOOK_SECRET": None, "MP_VERIFY_SIGNATURES": False}
    )
    assert app.config["MP_WEBHOOK_SECRET"] is None


@pytest.mark.parametrize(
    "settings",
    [
        {"LEASE_SECONDS": 5.0},  # shorter than HTTP_TIMEOUT (10)
        {"LEASE_SECONDS": 500.0},  # longer than RQ_JOB_TIMEOUT (180)
        {"GHL_MAX_WAIT": 60.0},  # a GHL wait could outlive the lease
    ],
)
def test_lease_must_fit_between_http_timeout_and_job_timeout(settings):
    with pytest.raises(ConfigError, match="LEASE_SECONDS"):
        create_app(ProductionConfig, {**PRODUCTION, **settings})


def test_ghl_rate_limit():
    assert parse_rate_limit("100/10") == (100, 10.0)
    assert parse_rate_limit("off") is None and parse_rate_limit("") is None
    for bad in ("100", "a/b", "0/10", "10/0"):
        with pytest.raises(ConfigError, match="GHL_RATE_LIMIT"):
            parse_rate_limit(bad)


def test_default_recovery_of_a_killed_worker_is_within_a_minute():
    """A SIGKILLed worker's event is back in the queue once its lease runs out and the
    reconciler's next pass sees it: by default well within 60 s (RQ alone: ~13 min)."""
    assert ProductionConfig.LEASE_SECONDS + ProductionConfig.RECONCILE_INTERVAL < 60
    assert ProductionConfig.HTTP_TIMEOUT < ProductionConfig.LEASE_SECONDS


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0])
def test_signature_tolerance_must_be_finite_and_not_negative(tolerance):
    with pytest.raises(ConfigError, match="MP_SIGNATURE_TOLERANCE"):
        create_app(ProductionConfig, {**PRODUCTION, "MP_SIGNATURE_TOLERANCE": tolerance})


def test_production_defaults_refuse_ipn_and_check_the_signature_time():
    app = create_app(ProductionConfig, PRODUCTION)
    assert app.config["MP_ACCEPT_IPN"] is False
    assert app.config["MP_SIGNATURE_TOLERANCE"] == 300


def test_tag_mode_and_custom_fields():
    assert parse_tag_mode(None) == "replace" and parse_tag_mode(" Accumulate ") == "accumulate"
    with pytest.raises(ConfigError, match="GHL_TAG_MODE"):
        parse_tag_mode("sometimes")
    assert parse_custom_fields("") == {}
    assert parse_custom_fields("payment_id=contact.mp_last, status = abc123") == {
        "payment_id": "contact.mp_last",
        "status": "abc123",
    }
    with pytest.raises(ConfigError, match="GHL_CUSTOM_FIELDS"):
        parse_custom_fields("colour=contact.x")
    with pytest.raises(ConfigError, match="GHL_CUSTOM_FIELDS"):
        parse_custom_fields("status")


def test_a_retired_setting_still_set_is_said_to_be_ignored(monkeypatch, caplog):
    monkeypatch.setenv("RETENTION_BATCH_PAUSE", "0.1")
    assert retired_settings_in_use() == [
        "RETENTION_BATCH_PAUSE is set but no longer read; use RETENTION_DUTY "
        "(a fraction of the purge's time; see README)"
    ]
    with caplog.at_level("WARNING"):
        create_app("testing")
    assert "RETENTION_BATCH_PAUSE is set but no longer read" in caplog.text
    monkeypatch.delenv("RETENTION_BATCH_PAUSE")
    assert retired_settings_in_use() == []
