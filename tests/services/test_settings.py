"""Settings refuse what would make the service unsafe, naming the variable."""

from __future__ import annotations

import logging

import pytest

from services.errors import ConfigurationError
from services.settings import MIN_JWT_SECRET_BYTES, Settings


def test_production_refuses_a_jwt_secret_shorter_than_32_bytes() -> None:
    env = {"APP_ENV": "production", "JWT_SECRET": "x" * (MIN_JWT_SECRET_BYTES - 1)}
    with pytest.raises(ConfigurationError, match="JWT_SECRET must be at least 32 bytes"):
        Settings.from_env(env)


def test_the_secret_length_counts_bytes_not_characters() -> None:
    # 16 two-byte characters are 32 bytes: as strong as 32 ASCII ones.
    settings = Settings.from_env({"APP_ENV": "production", "JWT_SECRET": "é" * 16})
    assert settings.jwt_secret == "é" * 16


def test_production_accepts_a_32_byte_jwt_secret() -> None:
    secret = "s" * MIN_JWT_SECRET_BYTES
    assert Settings.from_env({"APP_ENV": "production", "JWT_SECRET": secret}).jwt_secret == secret


def test_development_warns_about_a_short_jwt_secret_without_logging_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.settings"):
        settings = Settings.from_env({"JWT_SECRET": "hunter2"})
    assert settings.jwt_secret == "hunter2"
    assert "JWT_SECRET must be at least 32 bytes for HS256, got 7" in caplog.text
    assert "hunter2" not in caplog.text
