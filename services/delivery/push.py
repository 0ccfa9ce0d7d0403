"""Web Push, the third delivery channel: VAPID keys, encrypted payloads, one attempt per row.

A message is the alert's small JSON payload encrypted for the browser's subscription keys
(RFC 8291, aes128gcm, built by pywebpush), authorised by a VAPID JWT signed with our key
(RFC 8292, py-vapid), POSTed to the subscription's endpoint with our own HTTP client (RFC 8030).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from py_vapid import Vapid
from pywebpush import WebPusher

from services.dev_secrets import kept_secret
from services.errors import ServiceError
from services.settings import P256_ORDER, Settings

VAPID_KEY_FILE = "vapid_private_key"
# How long a push service keeps a message for a browser that is offline.
TTL_SECONDS = 86_400
# The plaintext payload's limit; encrypted it stays under the 4,096 bytes every push service
# accepts (RFC 8030 §7.2).
MAX_PAYLOAD_BYTES = 3_072
# A VAPID JWT lives 12 hours (push services refuse more than 24) and is reused for an
# audience until one hour of it is left.
VAPID_TOKEN_SECONDS = 12 * 3600
VAPID_TOKEN_MIN_LEFT = 3600
# A Retry-After further away than this is read as this.
MAX_RETRY_AFTER_SECONDS = TTL_SECONDS
USER_AGENT = "material-changes-push/1"

NOT_CONFIGURED = (
    "Web Push is not configured: APP_ENV=production without VAPID_PRIVATE_KEY and "
    "VAPID_SUBJECT queues and sends no push deliveries"
)


class PushNotConfigured(ServiceError):
    """This deployment has no VAPID key, so it cannot send Web Push."""

    code = "PUSH_NOT_CONFIGURED"


def new_private_key() -> str:
    """A random P-256 private key, base64url of its 32 bytes (the VAPID_PRIVATE_KEY form)."""
    while True:
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < P256_ORDER:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def vapid_private_key(settings: Settings) -> str | None:
    """VAPID_PRIVATE_KEY, or in development one generated once and kept in `$DATA_DIR`."""
    if settings.vapid_private_key:
        return settings.vapid_private_key
    if settings.is_production:
        return None
    return kept_secret(settings.data_dir, VAPID_KEY_FILE, make=new_private_key)


def configured(settings: Settings) -> bool:
    """Whether this deployment can send Web Push (it has a VAPID key)."""
    return settings.vapid_private_key is not None or not settings.is_production


def application_server_key(settings: Settings) -> str:
    """The VAPID public key browsers subscribe with: base64url of the uncompressed point."""
    key = vapid_private_key(settings)
    if key is None:
        raise PushNotConfigured("Web Push is not configured on this server")
    return _public_key(Vapid.from_raw(key.encode()))


def _public_key(vapid: Vapid) -> str:
    numbers = vapid.public_key.public_numbers()
    point = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def alert_payload(row: Mapping[str, Any], *, public_base_url: str) -> bytes:
    """The plaintext a service worker gets: what to show and where a click goes, ≤ 3 KB."""
    message = {
        "type": "alert.created",
        "alertId": str(row["id"]),
        "ticker": row["ticker"],
        "headline": row["headline"],
        "url": f"{public_base_url.rstrip('/')}/stocks/{quote(row['ticker'], safe='')}",
    }
    body = _compact(message)
    if len(body) > MAX_PAYLOAD_BYTES:
        # Only the headline is unbounded; cut it (on a character) to fit, with an ellipsis.
        excess = len(body) - MAX_PAYLOAD_BYTES
        encoded = row["headline"].encode()
        message["headline"] = (
            encoded[: max(0, len(encoded) - excess - 3)].decode(errors="ignore") + "…"
        )
        body = _compact(message)
    return body


def _compact(message: Mapping[str, str]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def audience(endpoint: str) -> str:
    """The VAPID `aud`: the origin of the push service's endpoint."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class VapidSigner:
    """Signs VAPID JWTs with our key, one per push service origin, reused while fresh."""

    vapid: Vapid
    subject: str
    _tokens: dict[str, tuple[float, str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidSigner | None:
        key = vapid_private_key(settings)
        if key is None:
            return None
        return cls(Vapid.from_raw(key.encode()), settings.vapid_subject)

    def authorization(self, endpoint: str, *, now: float | None = None) -> str:
        """The `Authorization: vapid t=…, k=…` value for a send to `endpoint`."""
        moment = time.time() if now is None else now
        aud = audience(endpoint)
        cached = self._tokens.get(aud)
        if cached is not None and cached[0] - moment >= VAPID_TOKEN_MIN_LEFT:
            return cached[1]
        expires = int(moment) + VAPID_TOKEN_SECONDS
        headers = self.vapid.sign({"aud": aud, "exp": expires, "sub": self.subject})
        value = str(headers["Authorization"])
        self._tokens[aud] = (expires, value)
        return value


def encrypt(payload: bytes, *, endpoint: str, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body (RFC 8291) of `payload` for one subscription's keys."""
    pusher = WebPusher({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}})
    body: bytes = pusher.encode(payload, content_encoding="aes128gcm")["body"]
    return body


def request_headers(authorization: str) -> dict[str, str]:
    """The headers of one push message (its body is aes128gcm)."""
    return {
        "authorization": authorization,
        "content-encoding": "aes128gcm",
        "content-type": "application/octet-stream",
        "ttl": str(TTL_SECONDS),
        "urgency": "normal",
        "user-agent": USER_AGENT,
    }


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), capped; None if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
