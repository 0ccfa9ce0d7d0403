"""Signed webhooks: endpoint URL and address checks, event payloads, and one delivery attempt.

Events are signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature
headers; HMAC-SHA256 over "id.timestamp.body"), so receivers can verify them with any
standardwebhooks library and the endpoint's "whsec_" secret.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit
from uuid import UUID

import httpx
from standardwebhooks import Webhook

from services.delivery import outbound
from services.errors import BadUserInput
from services.market.states import AlertType

MAX_URL_LENGTH = 2048
TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 4096
# How much of a failed response's body is kept in the delivery's last error.
ERROR_BODY_CHARS = 200
MAX_ERROR_CHARS = 500
USER_AGENT = "material-changes-webhooks/1"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


@dataclass(frozen=True)
class SendResult:
    """The outcome of one delivery attempt; `gone` (HTTP 410) disables the endpoint."""

    ok: bool
    status_code: int | None
    error: str | None
    gone: bool


def new_secret() -> str:
    """A fresh signing secret: "whsec_" and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _parse(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise BadUserInput(f"webhook URL is not a valid URL: {exc}") from None
    return parts


def _literal_ip(host: str) -> outbound.IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def validate_url(url: str, *, allow_private: bool) -> str:
    """The URL stripped, or BadUserInput saying why it cannot be a webhook endpoint.

    Only syntax and literal addresses are checked here; services.delivery.outbound checks where the
    host name points. `allow_private` (development) admits http and local hosts.
    """
    url = url.strip()
    if not url:
        raise BadUserInput("webhook URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise BadUserInput(f"webhook URL must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise BadUserInput("webhook URL must not contain spaces or control characters")
    parts = _parse(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadUserInput("webhook URL must start with https:// (or http:// in development)")
    if "@" in parts.netloc:
        raise BadUserInput("webhook URL must not contain a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BadUserInput("webhook URL has no host")
    if "#" in url:
        raise BadUserInput("webhook URL must not contain a fragment (#…)")
    if allow_private:
        return url
    if scheme != "https":
        raise BadUserInput("webhook URL must use https")
    if host == "localhost" or host.endswith(".localhost"):
        raise BadUserInput("webhook URL must not point at localhost")
    ip = _literal_ip(host)
    if ip is not None and not outbound.is_public_address(ip):
        raise BadUserInput("webhook URL must not point at a private or local address")
    return url


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("webhook timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def alert_event(row: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """The alert.created event of an alert row (alert columns plus the stock's ticker and name)."""
    return {
        "type": "alert.created",
        "timestamp": _iso(now),
        "data": {
            "alertId": str(row["id"]),
            # The GraphQL enum name, so webhook and API consumers see the same value.
            "type": AlertType(row["alert_type"]).name,
            "ticker": row["ticker"],
            "stockName": row["name"],
            "asOf": row["as_of"].isoformat(),
            "previousState": row["previous_state"],
            "newState": row["new_state"],
            "headline": row["headline"],
            "whatChanged": row["what_changed"],
            "whyItMatters": row["why_it_matters"],
            "beforeVsNow": row["before_vs_now"],
            "whatDidntChange": row["what_didnt_change"],
            "createdAt": _iso(row["sent_at"]),
        },
    }


def test_event(endpoint_id: UUID, *, now: datetime) -> dict[str, Any]:
    """The webhook.test event a user sends to check an endpoint."""
    return {
        "type": "webhook.test",
        "timestamp": _iso(now),
        "data": {"endpointId": str(endpoint_id)},
    }


def encode_body(event: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: compact UTF-8 JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


async def _read_prefix(response: httpx.Response) -> bytes:
    # Raw bytes so a compressed body cannot expand in memory; accept-encoding asks for none.
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk[: MAX_RESPONSE_BYTES - len(kept)]
        if len(kept) >= MAX_RESPONSE_BYTES:
            break
    return bytes(kept)


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    allow_private: bool,
    now: datetime | None = None,
    # A number rather than the caller's asyncio.timeout: httpx needs it too, and a timeout must
    # come back as a SendResult, not as a cancellation.
    timeout: float = TIMEOUT_SECONDS,  # noqa: ASYNC109
) -> SendResult:
    """POST one signed event; never raises for network or HTTP failures.

    The caller owns `client`: create it with `outbound.receiver_client(...)`, whose connections
    go only to checked addresses of the host, and reuse it across sends. Redirects are
    not followed whatever the client says, the whole attempt is bounded by `timeout` seconds,
    and at most MAX_RESPONSE_BYTES of the response body are read. `message_id` must stay the
    same across retries of one delivery so receivers can deduplicate. `now` is the attempt's
    time (signed as webhook-timestamp), the current time by default.
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("send needs a timezone-aware `now`")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        # httpx's timeout bounds each phase; asyncio's bounds the whole attempt, DNS included,
        # so neither a slow resolver nor a trickled response can stretch it.
        async with asyncio.timeout(timeout):
            return await _attempt(
                client,
                url=url,
                secret=secret,
                message_id=message_id,
                body=body,
                allow_private=allow_private,
                moment=moment,
                timeout=timeout,
            )
    except (TimeoutError, httpx.TimeoutException):
        return _failed(f"timeout after {timeout:g} s")
    except outbound.AddressRefused as exc:
        return _failed(f"refused: {exc.message}")
    except httpx.ConnectError:
        # No detail: the error text names addresses, and an open port that refuses TLS would
        # read differently from a closed one.
        return _failed("connect failed")
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        return _failed(f"{type(exc).__name__}")


async def _attempt(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    allow_private: bool,
    moment: datetime,
    timeout: float,  # noqa: ASYNC109 - the caller holds the asyncio.timeout; httpx needs it too
) -> SendResult:
    try:
        url = validate_url(url, allow_private=allow_private)
    except BadUserInput as exc:
        return _failed(f"refused: {exc.message}")

    # sign() reads the timestamp as UTC, so it gets a UTC datetime; the header must match it.
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",
    }
    async with client.stream(
        "POST",
        url,
        content=body,
        headers=headers,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
    ) as response:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(ok=True, status_code=status, error=None, gone=False)
        if 300 <= status < 400:
            return _failed(f"redirect not followed (HTTP {status})", status)
        try:
            prefix = await _read_prefix(response)
        except httpx.HTTPError:
            prefix = b""  # the status is what matters; a broken body does not hide it
        text = prefix.decode("utf-8", errors="replace")[:ERROR_BODY_CHARS].strip()
        error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        return _failed(error, status, gone=status == 410)


def _failed(error: str, status_code: int | None = None, *, gone: bool = False) -> SendResult:
    return SendResult(ok=False, status_code=status_code, error=_short(error), gone=gone)
