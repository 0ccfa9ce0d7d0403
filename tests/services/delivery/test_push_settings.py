"""VAPID settings: a P-256 key, a subject push services accept, both together in production."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from services.delivery.channels import push
from services.errors import ConfigurationError
from services.settings import DEFAULT_VAPID_SUBJECT, P256_ORDER, Settings

PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET": "s" * 48,
    "DATABASE_URL": "postgresql://db.example.com/mc",
}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "key",
    [
        "not-base64!",
        _b64(b"\x01" * 31),  # too short
        _b64(b"\x00" * 32),  # zero is no key
        _b64(P256_ORDER.to_bytes(32, "big")),  # past the group order
    ],
)
def test_a_vapid_private_key_that_is_no_p256_key_is_refused_by_name(key: str) -> None:
    with pytest.raises(ConfigurationError, match="VAPID_PRIVATE_KEY"):
        Settings.from_env({"VAPID_PRIVATE_KEY": key})


@pytest.mark.parametrize(
    "subject", ["ops@example.com", "mailto:nobody", "https://example.com/contact", "http://x.io"]
)
def test_a_vapid_subject_push_services_would_refuse_is_refused_by_name(subject: str) -> None:
    with pytest.raises(ConfigurationError, match="VAPID_SUBJECT"):
        Settings.from_env({"VAPID_SUBJECT": subject})


def test_production_needs_the_key_and_the_subject_together() -> None:
    key = push.new_private_key()
    for half in ({"VAPID_PRIVATE_KEY": key}, {"VAPID_SUBJECT": "mailto:ops@example.com"}):
        with pytest.raises(ConfigurationError, match="VAPID_PRIVATE_KEY and VAPID_SUBJECT"):
            Settings.from_env({**PRODUCTION, **half})
    both = Settings.from_env(
        {**PRODUCTION, "VAPID_PRIVATE_KEY": key, "VAPID_SUBJECT": "https://example.com"}
    )
    assert push.configured(both) and push.vapid_private_key(both) == key
    assert key not in repr(both)


def test_production_without_vapid_sends_no_push_and_generates_no_key(tmp_path: Path) -> None:
    settings = Settings.from_env({**PRODUCTION, "DATA_DIR": str(tmp_path)})
    assert not push.configured(settings)
    assert push.vapid_private_key(settings) is None
    with pytest.raises(push.PushNotConfigured):
        push.application_server_key(settings)
    assert not (tmp_path / push.VAPID_KEY_FILE).exists()


def test_development_generates_one_key_and_keeps_it(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert settings.vapid_subject == DEFAULT_VAPID_SUBJECT and push.configured(settings)
    first = push.application_server_key(settings)
    assert push.application_server_key(Settings.from_env({"DATA_DIR": str(tmp_path)})) == first
    assert (tmp_path / push.VAPID_KEY_FILE).stat().st_mode & 0o777 == 0o600
