"""Settings refuse what would make the service unsafe, naming the variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.errors import ConfigurationError
from services.settings import MIN_JWT_SECRET_BYTES, Settings

PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET": "s" * MIN_JWT_SECRET_BYTES,
    "DATABASE_URL": "postgresql://db.internal/app",
}


def test_production_refuses_to_start_without_database_url() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "DATABASE_URL"}
    with pytest.raises(ConfigurationError, match="production requires DATABASE_URL"):
        Settings.from_env(env)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        Settings.from_env({**env, "DATABASE_URL": " "})
    assert Settings.from_env(PRODUCTION).database_url == PRODUCTION["DATABASE_URL"]
    assert Settings.from_env({}).database_url is None  # development: the embedded server


def test_production_refuses_a_jwt_secret_shorter_than_32_bytes() -> None:
    env = {"APP_ENV": "production", "JWT_SECRET": "x" * (MIN_JWT_SECRET_BYTES - 1)}
    with pytest.raises(ConfigurationError, match="JWT_SECRET must be at least 32 bytes"):
        Settings.from_env(env)


def test_the_secret_length_counts_bytes_not_characters() -> None:
    # 16 two-byte characters are 32 bytes: as strong as 32 ASCII ones.
    settings = Settings.from_env({**PRODUCTION, "JWT_SECRET": "é" * 16})
    assert settings.jwt_secret == "é" * 16


def test_production_accepts_a_32_byte_jwt_secret() -> None:
    secret = "s" * MIN_JWT_SECRET_BYTES
    assert Settings.from_env({**PRODUCTION, "JWT_SECRET": secret}).jwt_secret == secret


def test_development_warns_about_a_short_jwt_secret_without_logging_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.settings"):
        settings = Settings.from_env({"JWT_SECRET": "hunter2"})
    assert settings.jwt_secret == "hunter2"
    assert "JWT_SECRET must be at least 32 bytes for HS256, got 7" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "SMTP_URL in production requires EMAIL_FROM"),
        ({"EMAIL_FROM": "alerts@example.com"}, "requires EMAIL_LINK_SECRET of at least 32 bytes"),
        (
            {"EMAIL_FROM": "alerts@example.com", "EMAIL_LINK_SECRET": "short"},
            "requires EMAIL_LINK_SECRET of at least 32 bytes",
        ),
    ],
)
def test_production_email_needs_a_sender_and_a_link_secret(
    extra: dict[str, str], message: str
) -> None:
    env = {**PRODUCTION, "SMTP_URL": "smtp://mail.example.com", **extra}
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_delivery_defaults_differ_between_development_and_production() -> None:
    development = Settings.from_env({})
    production = Settings.from_env(PRODUCTION)
    assert development.webhook_allow_private and not production.webhook_allow_private
    assert development.webhook_retry_schedule == (60, 300, 1800, 7200, 18000, 36000, 36000)
    complete = Settings.from_env(
        {
            **PRODUCTION,
            "SMTP_URL": "smtps://u:p@mail.example.com",
            "EMAIL_FROM": "alerts@example.com",
            "EMAIL_LINK_SECRET": "e" * 32,
            "PUBLIC_BASE_URL": "https://app.example.com/",
        }
    )
    assert complete.public_base_url == "https://app.example.com"
    assert "u:p" not in repr(complete) and "eeee" not in repr(complete)


def test_symbols_max_age_days_defaults_to_a_week_and_rejects_bad_values() -> None:
    assert Settings.from_env({}).symbols_max_age_days == 7
    assert Settings.from_env({"SYMBOLS_MAX_AGE_DAYS": "0"}).symbols_max_age_days == 0
    with pytest.raises(ConfigurationError, match="SYMBOLS_MAX_AGE_DAYS must be >= 0, got '-1'"):
        Settings.from_env({"SYMBOLS_MAX_AGE_DAYS": "-1"})
    with pytest.raises(ConfigurationError, match="SYMBOLS_MAX_AGE_DAYS must be an integer"):
        Settings.from_env({"SYMBOLS_MAX_AGE_DAYS": "weekly"})


def test_shutdown_grace_and_websocket_compression_are_validated_and_named() -> None:
    settings = Settings.from_env({"SHUTDOWN_GRACE_SECONDS": "3", "WEBSOCKET_COMPRESSION": "1"})
    assert (settings.shutdown_grace_seconds, settings.websocket_compression) == (3, True)
    defaults = Settings.from_env({})
    assert (defaults.shutdown_grace_seconds, defaults.websocket_compression) == (10, False)
    with pytest.raises(ConfigurationError, match="SHUTDOWN_GRACE_SECONDS must be >= 1"):
        Settings.from_env({"SHUTDOWN_GRACE_SECONDS": "0"})
    with pytest.raises(ConfigurationError, match="WEBSOCKET_COMPRESSION must be a boolean"):
        Settings.from_env({"WEBSOCKET_COMPRESSION": "maybe"})


def test_log_format_defaults_to_text_and_accepts_json() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigurationError, match="LOG_FORMAT must be one of text, json"):
        Settings.from_env({"LOG_FORMAT": "yaml"})


def test_prometheus_multiproc_dir_must_not_be_a_file(tmp_path: Path) -> None:
    file = tmp_path / "metrics"
    file.write_text("")
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR must name a directory"):
        Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(file)})
    directory = tmp_path / "not-yet"
    settings = Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert settings.prometheus_multiproc_dir == directory


def test_evaluation_alert_chunk_defaults_and_rejects_bad_values() -> None:
    assert Settings.from_env({}).evaluation_alert_chunk == 2_000
    assert Settings.from_env({"EVALUATION_ALERT_CHUNK": "250"}).evaluation_alert_chunk == 250
    with pytest.raises(ConfigurationError, match="EVALUATION_ALERT_CHUNK must be >= 1"):
        Settings.from_env({"EVALUATION_ALERT_CHUNK": "0"})
    with pytest.raises(ConfigurationError, match="EVALUATION_ALERT_CHUNK must be an integer"):
        Settings.from_env({"EVALUATION_ALERT_CHUNK": "lots"})
