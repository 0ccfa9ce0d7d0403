"""The Web Push channel: one encrypted message per alert to each push subscription of the user.

A message is the alert's small JSON payload encrypted for the browser's subscription keys
(RFC 8291, aes128gcm, built by pywebpush), authorised by a VAPID JWT signed with our key
(RFC 8292, py-vapid), POSTed to the subscription's endpoint with our own async HTTP client
(RFC 8030), so it goes through the same address checks as a webhook and never blocks the loop.
201/202 is delivered; 404/410 deletes the subscription; 429 and 5xx retry (not before a
Retry-After); any other 4xx fails the delivery.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from py_vapid import Vapid

from services.db import Connection
from services.delivery import outbound, push_subscriptions, webhooks
from services.delivery.channel import (
    LEASE_FREE,
    Channel,
    Outcome,
    Session,
    Unrenderable,
    claim_statement,
)
from services.dev_secrets import kept_secret
from services.errors import BadUserInput, ServiceError
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
    return public_key_of(Vapid.from_raw(key.encode()))


def public_key_of(vapid: Vapid) -> str:
    """The base64url uncompressed point (65 bytes) of a VAPID key pair's public key."""
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
        # Only the headline is unbounded: keep its longest prefix that fits with an ellipsis
        # (found by bisection, since JSON escapes make its encoded length uneven).
        text, fits, too_long = row["headline"], 0, len(row["headline"])
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            message["headline"] = text[:middle] + "…"
            if len(_compact(message)) <= MAX_PAYLOAD_BYTES:
                fits = middle
            else:
                too_long = middle
        message["headline"] = text[:fits] + "…"
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


def _web_pusher() -> type[Any]:
    """pywebpush's WebPusher, imported on first use (cached by Python after that)."""
    # pywebpush imports aiohttp and requests (~1 s of start-up), which every API and ingest
    # process would otherwise pay at import whether or not it sends push.
    from pywebpush import WebPusher

    return WebPusher


def encrypt(payload: bytes, *, endpoint: str, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body (RFC 8291) of `payload` for one subscription's keys."""
    pusher = _web_pusher()({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}})
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


def _outcome(status: int, retry_after: str | None, text: str) -> Outcome:
    """What a push service's answer means for the delivery (RFC 8030 §5, §8.4)."""
    if 200 <= status < 300:
        return Outcome(delivered=True, status_code=status)
    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status in (404, 410):
        return Outcome(False, status, error, permanent=True, target_gone=True)
    if status == 429 or status >= 500:
        return Outcome(False, status, error, retry_after=retry_after_seconds(retry_after))
    if 400 <= status < 500:
        return Outcome(False, status, error, permanent=True)
    return Outcome(False, status, f"unexpected HTTP {status} (redirects are not followed)")


@dataclass
class PushSession(Session):
    """One pass's HTTP client, VAPID signer and the address policy it sends under."""

    client: httpx.AsyncClient
    signer: VapidSigner
    allow_private: bool
    public_base_url: str

    def render(self, batch: Sequence[Any], now: datetime) -> bytes:
        row = batch[0]
        try:
            return encrypt(
                alert_payload(row, public_base_url=self.public_base_url),
                endpoint=row["endpoint"],
                p256dh=row["p256dh"],
                auth=row["auth"],
            )
        except Exception as exc:  # pywebpush/http_ece raise several types for bad stored keys
            raise Unrenderable(f"cannot encrypt for this subscription: {exc}") from None

    async def send(self, batch: Sequence[Any], message: Any, now: datetime) -> Outcome:
        endpoint = batch[0]["endpoint"]
        try:
            push_subscriptions.check_endpoint(endpoint, allow_private=self.allow_private)
        except BadUserInput as exc:
            return Outcome(False, error=f"refused: {exc.message}")
        headers = request_headers(self.signer.authorization(endpoint, now=now.timestamp()))
        try:
            # The whole attempt, DNS included, like a webhook's.
            async with asyncio.timeout(webhooks.TIMEOUT_SECONDS):
                return await self._post(endpoint, message, headers)
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(False, error=f"timeout after {webhooks.TIMEOUT_SECONDS:g} s")
        except outbound.AddressRefused as exc:
            return Outcome(False, error=f"refused: {exc.message}")
        except httpx.ConnectError:
            # No detail: the error text names addresses (as for webhooks).
            return Outcome(False, error="connect failed")
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            return Outcome(False, error=type(exc).__name__)

    async def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> Outcome:
        async with self.client.stream(
            "POST", endpoint, content=body, headers=headers, follow_redirects=False
        ) as response:
            text = ""
            if not 200 <= response.status_code < 300:
                prefix = await _read_prefix(response)
                text = prefix.decode("utf-8", errors="replace")[: webhooks.ERROR_BODY_CHARS]
            return _outcome(response.status_code, response.headers.get("retry-after"), text.strip())


async def _read_prefix(response: httpx.Response) -> bytes:
    kept = bytearray()
    try:
        async for chunk in response.aiter_raw():
            kept += chunk[: webhooks.MAX_RESPONSE_BYTES - len(kept)]
            if len(kept) >= webhooks.MAX_RESPONSE_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status is what matters; a broken body does not hide it
    return bytes(kept)


class PushChannel(Channel):
    """Web Push to each of the user's browser subscriptions; 404/410 deletes a subscription."""

    name: ClassVar[str] = "push"
    target_column: ClassVar[str | None] = "push_subscription_id"
    # `OFFSET 0` keeps the LATERAL a probe of push_subscriptions_user_slot per alert.
    enqueue_sql: ClassVar[str] = """
SELECT a.user_id, a.id, 'push', p.id, now()
FROM a
CROSS JOIN LATERAL (
    SELECT s.id FROM push_subscriptions s WHERE s.user_id = a.user_id OFFSET 0
) p"""
    # Read from deliveries_push_due in its order: other channels' pending rows are not in it.
    claim_sql: ClassVar[str] = claim_statement(f"""due AS (
    SELECT d.id
    FROM deliveries d
    WHERE d.channel = 'push' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {LEASE_FREE}
    ORDER BY d.next_attempt_at, d.id
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)""")  # noqa: S608
    work_sql: ClassVar[str] = """
SELECT d.id AS delivery_id, d.user_id, d.attempts, d.push_subscription_id, s.endpoint,
       s.p256dh, s.auth, a.id, a.headline, e.ticker
FROM deliveries d
JOIN push_subscriptions s ON s.id = d.push_subscription_id
JOIN alert_history a ON a.id = d.alert_id
JOIN entities e ON e.id = a.entity_id
WHERE d.id = ANY($1::uuid[])
ORDER BY d.next_attempt_at, d.id
"""
    not_configured: ClassVar[str] = NOT_CONFIGURED

    def configured(self, settings: Settings) -> bool:
        return configured(settings)

    def session(self, settings: Settings) -> AbstractAsyncContextManager[Session | None]:
        return _push_session(settings)

    async def failed(self, conn: Connection, batch: Sequence[Any], outcome: Outcome) -> bool:
        if not outcome.target_gone:
            return False
        await push_subscriptions.retire(conn, [row["push_subscription_id"] for row in batch])
        return True


@asynccontextmanager
async def _push_session(settings: Settings) -> AsyncIterator[Session | None]:
    signer = VapidSigner.from_settings(settings)
    if signer is None:
        yield None
        return
    _web_pusher()  # a deliverer pays the import when it opens the channel, not in a send
    async with outbound.receiver_client(
        allow_private=settings.webhook_allow_private, timeout=webhooks.TIMEOUT_SECONDS
    ) as client:
        yield PushSession(client, signer, settings.webhook_allow_private, settings.public_base_url)
