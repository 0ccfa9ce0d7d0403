"""Webhook delivery against a real HTTP receiver on loopback; only DNS answers are ever faked."""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import json
import runpy
import socket
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import httpx
import pytest
from standardwebhooks import Webhook

from services.delivery import outbound, webhooks
from services.delivery.outbound import AddressRefused
from services.delivery.webhooks import SendResult
from services.errors import BadUserInput
from tests.fixtures.webhook_receiver import Receiver, Reply
from tests.paths import ROOT

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ALERT_ID = UUID("6f1c2b1e-8d4a-4c1e-9a57-0f7f3c1d2e3a")
ENDPOINT_ID = UUID("0b7e3f52-1c9d-4e8a-b3a1-5d2c6e7f8a90")

ALERT_ROW: dict[str, Any] = {
    "id": ALERT_ID,
    "alert_type": "trend_break",
    "ticker": "ACME",
    "name": "Acme Société",
    "as_of": date(2024, 5, 17),
    "previous_state": "ABOVE_200DMA",
    "new_state": "BELOW_200DMA",
    "headline": "ACME fell below its 200-day average",
    "what_changed": "The close crossed below the 200-day moving average.",
    "why_it_matters": "Long-term trend followers treat this as a regime change.",
    "before_vs_now": "Above the average for 14 months; now 3% below it.",
    "what_didnt_change": "Valuation and fundamentals are unchanged.",
    "sent_at": datetime(2024, 5, 17, 21, 5, 3, 250000, tzinfo=UTC),
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with outbound.receiver_client(
        allow_private=True, timeout=webhooks.TIMEOUT_SECONDS
    ) as client:
        yield client


def production_client() -> httpx.AsyncClient:
    """A receiver client as production builds it: public addresses only."""
    return outbound.receiver_client(allow_private=False, timeout=webhooks.TIMEOUT_SECONDS)


async def _send(
    client: httpx.AsyncClient,
    url: str,
    *,
    message_id: str = "msg_1",
    body: bytes = b'{"type":"webhook.test"}',
    allow_private: bool = True,
    now: datetime | None = None,
    timeout_seconds: float = webhooks.TIMEOUT_SECONDS,
) -> SendResult:
    return await webhooks.send(
        client,
        url=url,
        secret=SECRET,
        message_id=message_id,
        body=body,
        allow_private=allow_private,
        now=now,
        timeout=timeout_seconds,
    )


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Answer these names from `answers` (an empty list: no such name); others resolve for real."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return await real(host, port, *args, **kwargs)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


def _seconds_ago(seconds: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)


# --- Sending --------------------------------------------------------------------------------


async def test_an_alert_is_posted_signed_with_the_documented_body(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    now = _seconds_ago(30)
    body = webhooks.encode_body(webhooks.alert_event(ALERT_ROW, now=now))

    result = await _send(client, receiver.url(), message_id="msg_abc", body=body, now=now)

    assert result == SendResult(ok=True, status_code=200, error=None, gone=False)
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook", body)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "material-changes-webhooks/1"
    assert request.headers["webhook-id"] == "msg_abc"
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert request.headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(request.body, request.headers) == {
        "type": "alert.created",
        "timestamp": now.isoformat(),
        "data": {
            "alertId": "6f1c2b1e-8d4a-4c1e-9a57-0f7f3c1d2e3a",
            "type": "TREND_BREAK",
            "ticker": "ACME",
            "stockName": "Acme Société",
            "asOf": "2024-05-17",
            "previousState": "ABOVE_200DMA",
            "newState": "BELOW_200DMA",
            "headline": "ACME fell below its 200-day average",
            "whatChanged": "The close crossed below the 200-day moving average.",
            "whyItMatters": "Long-term trend followers treat this as a regime change.",
            "beforeVsNow": "Above the average for 14 months; now 3% below it.",
            "whatDidntChange": "Valuation and fundamentals are unchanged.",
            "createdAt": "2024-05-17T21:05:03.250000+00:00",
        },
    }


async def test_another_secret_does_not_verify(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    await _send(client, receiver.url())

    [request] = receiver.requests
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(webhooks.new_secret()).verify(request.body, request.headers)


async def test_the_timestamp_is_the_attempts_time_by_default(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    before = int(time.time())
    await _send(client, receiver.url())
    after = int(time.time())

    [request] = receiver.requests
    assert before <= int(request.headers["webhook-timestamp"]) <= after
    Webhook(SECRET).verify(request.body, request.headers)


async def test_a_timestamp_in_another_zone_is_signed_as_the_same_instant(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    now = _seconds_ago(10).astimezone(timezone(timedelta(hours=-5)))
    await _send(client, receiver.url(), now=now)

    [request] = receiver.requests
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    Webhook(SECRET).verify(request.body, request.headers)


async def test_a_retry_after_a_500_carries_the_same_webhook_id(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script(Reply(500, b"  database is down\n"), Reply(204))
    first_try, retry = _seconds_ago(90), _seconds_ago(30)

    failed = await _send(client, receiver.url(), message_id="msg_retry", now=first_try)
    delivered = await _send(client, receiver.url(), message_id="msg_retry", now=retry)

    assert failed == SendResult(
        ok=False, status_code=500, error="HTTP 500: database is down", gone=False
    )
    assert delivered == SendResult(ok=True, status_code=204, error=None, gone=False)
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["msg_retry", "msg_retry"]
    assert [r.headers["webhook-timestamp"] for r in receiver.requests] == [
        str(int(first_try.timestamp())),
        str(int(retry.timestamp())),
    ]
    for request in receiver.requests:
        Webhook(SECRET).verify(request.body, request.headers)


async def test_410_means_gone(receiver: Receiver, client: httpx.AsyncClient) -> None:
    receiver.script(Reply(410, b"endpoint removed"))

    result = await _send(client, receiver.url())

    assert result == SendResult(
        ok=False, status_code=410, error="HTTP 410: endpoint removed", gone=True
    )


async def test_a_4xx_without_a_body_names_only_the_status(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script(Reply(404))

    result = await _send(client, receiver.url())

    assert result == SendResult(ok=False, status_code=404, error="HTTP 404", gone=False)


async def test_a_slow_receiver_times_out(receiver: Receiver, client: httpx.AsyncClient) -> None:
    receiver.script(Reply(200, delay=5.0))

    started = time.monotonic()
    result = await _send(client, receiver.url(), timeout_seconds=0.5)

    assert time.monotonic() - started < 3
    assert result == SendResult(ok=False, status_code=None, error="timeout after 0.5 s", gone=False)


def test_the_default_timeout_is_ten_seconds() -> None:
    assert webhooks.TIMEOUT_SECONDS == 10.0
    assert f"timeout after {webhooks.TIMEOUT_SECONDS:g} s" == "timeout after 10 s"


async def test_a_redirect_is_not_followed_even_by_a_client_that_would(
    receiver: Receiver,
) -> None:
    receiver.script(Reply(302, location=receiver.url("/elsewhere")))

    async with httpx.AsyncClient(follow_redirects=True, trust_env=False) as eager:
        result = await _send(eager, receiver.url())

    assert result == SendResult(
        ok=False, status_code=302, error="redirect not followed (HTTP 302)", gone=False
    )
    assert [r.path for r in receiver.requests] == ["/hook"]


class _CountingTransport(httpx.AsyncHTTPTransport):
    """A real transport that counts the response body bytes handed to the client."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        inner: httpx.AsyncByteStream = response.stream
        transport = self

        class Counting(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner:
                    transport.received += len(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await inner.aclose()

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=Counting(),
            extensions=response.extensions,
        )


async def test_only_a_prefix_of_a_1_mb_error_body_is_read(receiver: Receiver) -> None:
    receiver.script(Reply(500, b"y" * 1_000_000))
    transport = _CountingTransport()

    async with httpx.AsyncClient(transport=transport, trust_env=False) as counting:
        result = await _send(counting, receiver.url())

    assert result == SendResult(
        ok=False, status_code=500, error="HTTP 500: " + "y" * 200, gone=False
    )
    # The client stops after MAX_RESPONSE_BYTES; one socket read (at most 64 KiB) may overshoot.
    assert 0 < transport.received <= webhooks.MAX_RESPONSE_BYTES + 65_536


async def test_an_endless_error_body_does_not_hold_the_sender(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script(Reply(503, b"busy " * 10, endless=True))

    started = time.monotonic()
    result = await _send(client, receiver.url(), timeout_seconds=5.0)

    assert time.monotonic() - started < 2
    assert result.status_code == 503 and not result.ok
    assert result.error is not None and result.error.startswith("HTTP 503: busy busy")
    assert len(result.error) <= len("HTTP 503: ") + 200
    assert receiver.hung_up.wait(5), "the sender should hang up instead of reading on"


async def test_an_endless_success_body_is_not_read_at_all(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.script(Reply(200, endless=True))

    started = time.monotonic()
    result = await _send(client, receiver.url(), timeout_seconds=5.0)

    assert time.monotonic() - started < 2
    assert result == SendResult(ok=True, status_code=200, error=None, gone=False)
    assert receiver.hung_up.wait(5)


async def test_a_closed_port_is_a_failure_not_an_exception(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = await _send(client, f"http://127.0.0.1:{port}/hook")

    assert not result.ok and result.status_code is None and not result.gone
    assert result.error is not None and result.error.startswith("connect failed")
    assert "Traceback" not in result.error


async def test_a_name_that_now_resolves_to_loopback_is_refused_before_sending(
    receiver: Receiver, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Accepted at creation with a public address; DNS has since been pointed at loopback.
    _fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    url = f"https://hooks.example.test:{receiver.port}/hook"

    async with production_client() as production:
        result = await _send(production, url, allow_private=False)

    assert result == SendResult(
        ok=False,
        status_code=None,
        error="refused: host 'hooks.example.test' does not resolve to a public address",
        gone=False,
    )
    assert receiver.requests == []


async def test_loopback_is_refused_in_production_and_allowed_in_development(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    async with production_client() as production:
        refused = await _send(production, receiver.url(), allow_private=False)
    allowed = await _send(client, receiver.url(), allow_private=True)

    assert refused.error is not None and refused.error.startswith("refused: ")
    assert allowed.ok
    assert len(receiver.requests) == 1


# --- Addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.0.0.1", False),
        ("10.255.255.255", False),
        ("172.16.0.1", False),
        ("172.31.255.254", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("100.127.255.254", False),
        ("169.254.169.254", False),  # cloud metadata
        ("169.254.0.1", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("198.18.0.1", False),  # benchmarking
        ("198.19.255.254", False),
        ("192.0.2.1", False),  # documentation
        ("198.51.100.1", False),
        ("203.0.113.1", False),
        ("192.0.0.8", False),
        ("192.88.99.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456:789a::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("100::1", False),
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("93.184.216.34", True),
        ("172.32.0.1", True),  # just past 172.16.0.0/12
        ("100.128.0.1", True),  # just past 100.64.0.0/10
        ("11.0.0.1", True),
        ("::ffff:8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("2a00:1450:4001:82a::200e", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert outbound.is_public_address(ipaddress.ip_address(address)) is public


async def test_resolve_refuses_names_of_loopback_for_real() -> None:
    for url in ("https://localhost/hook", "https://127.0.0.1/hook", "https://127.1/hook"):
        with pytest.raises(AddressRefused, match="does not resolve to a public address"):
            await outbound.resolve_public(url, allow_private=False)
        await outbound.resolve_public(url, allow_private=True)


async def test_resolve_refuses_the_metadata_address() -> None:
    with pytest.raises(AddressRefused, match="does not resolve to a public address"):
        await outbound.resolve_public(
            "http://169.254.169.254/latest/meta-data", allow_private=False
        )


async def test_resolve_refuses_when_any_address_is_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_dns(
        monkeypatch,
        {
            "metadata.example.test": ["169.254.169.254"],
            "mixed.example.test": ["8.8.8.8", "10.0.0.7"],
            "v6.example.test": ["2606:4700:4700::1111", "fd00::1"],
            "public.example.test": ["93.184.216.34", "2606:2800:220:1::248"],
        },
    )
    for name, bad in [
        ("metadata.example.test", "169.254.169.254"),
        ("mixed.example.test", "10.0.0.7"),
        ("v6.example.test", "fd00::1"),
    ]:
        with pytest.raises(AddressRefused, match="does not resolve to a public address") as info:
            await outbound.resolve_public(f"https://{name}/hook", allow_private=False)
        # Never how the name resolved: the user may be probing names inside the network.
        assert bad not in info.value.message
        await outbound.resolve_public(f"https://{name}/hook", allow_private=True)
    await outbound.resolve_public("https://public.example.test:8443/hook", allow_private=False)


async def test_a_name_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"nowhere.example.test": []})

    for allow_private in (False, True):
        with pytest.raises(AddressRefused, match="'nowhere.example.test' does not resolve") as info:
            await outbound.resolve_public(
                "https://nowhere.example.test/", allow_private=allow_private
            )
        assert isinstance(info.value, BadUserInput)
        assert info.value.code == "BAD_USER_INPUT"
    with pytest.raises(AddressRefused, match="has no host"):
        await outbound.resolve_public("https:///hook", allow_private=True)


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "webhook URL is required"),
        ("   ", "webhook URL is required"),
        ("https://example.com/" + "a" * 2030, "at most 2048 characters"),
        ("ftp://example.com/hook", "must start with https://"),
        ("example.com/hook", "must start with https://"),
        ("https://user:pass@example.com/hook", "must not contain a user name or password"),
        ("https://token@example.com/hook", "must not contain a user name or password"),
        ("https:///hook", "has no host"),
        ("https://:443/hook", "has no host"),
        ("https://example.com/hook#section", "must not contain a fragment"),
        ("https://exa mple.com/hook", "must not contain spaces or control characters"),
        ("https://example.com/ho\nok", "must not contain spaces or control characters"),
        ("https://example.com:99999/hook", "not a valid URL"),
        ("https://[::1/hook", "not a valid URL"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_validate_url_refuses(url: str, message: str, allow_private: bool) -> None:
    with pytest.raises(BadUserInput, match=message):
        webhooks.validate_url(url, allow_private=allow_private)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "must use https"),
        ("http://169.254.169.254/latest/meta-data", "must use https"),
        ("https://169.254.169.254/latest/meta-data", "private or local address$"),
        ("https://127.0.0.1/hook", "private or local address"),
        ("https://10.1.2.3:8443/hook", "private or local address"),
        ("https://[::1]/hook", "private or local address"),
        ("https://[::ffff:127.0.0.1]/hook", "private or local address"),
        ("https://[fe80::1%25eth0]/hook", "private or local address"),
        ("https://localhost/hook", "must not point at localhost"),
        ("https://LOCALHOST./hook", "must not point at localhost"),
        ("https://api.localhost/hook", "must not point at localhost"),
    ],
)
def test_validate_url_refuses_local_targets_in_production(url: str, message: str) -> None:
    with pytest.raises(BadUserInput, match=message):
        webhooks.validate_url(url, allow_private=False)
    assert webhooks.validate_url(url, allow_private=True) == url


def test_validate_url_returns_the_url_stripped() -> None:
    url = "https://hooks.example.com/in/abc?tag=1"
    assert webhooks.validate_url(f"  {url}\n", allow_private=False) == url
    longest = "https://example.com/" + "a" * (webhooks.MAX_URL_LENGTH - len("https://example.com/"))
    assert webhooks.validate_url(longest, allow_private=False) == longest
    assert webhooks.validate_url("https://8.8.8.8/hook", allow_private=False)


# --- Secrets and payloads -------------------------------------------------------------------


def test_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = webhooks.new_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert secret != webhooks.new_secret()
    signature = Webhook(secret).sign("msg_1", datetime.now(UTC), "{}")
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }
    assert Webhook(secret).verify("{}", headers) == {}


def test_test_event_and_compact_utf8_body() -> None:
    now = datetime(2024, 5, 17, 22, 0, tzinfo=UTC)

    event = webhooks.test_event(ENDPOINT_ID, now=now)

    assert event == {
        "type": "webhook.test",
        "timestamp": "2024-05-17T22:00:00+00:00",
        "data": {"endpointId": "0b7e3f52-1c9d-4e8a-b3a1-5d2c6e7f8a90"},
    }
    assert webhooks.encode_body(event) == (
        b'{"type":"webhook.test","timestamp":"2024-05-17T22:00:00+00:00",'
        b'"data":{"endpointId":"0b7e3f52-1c9d-4e8a-b3a1-5d2c6e7f8a90"}}'
    )
    assert webhooks.encode_body({"name": "Société"}) == '{"name":"Société"}'.encode()


def test_alert_event_keeps_a_missing_previous_state_as_null() -> None:
    row = {**ALERT_ROW, "previous_state": None, "alert_type": "valuation_regime_change"}
    now = datetime(2024, 5, 17, 22, 0, tzinfo=UTC)

    data = webhooks.alert_event(row, now=now)["data"]

    assert data["previousState"] is None
    assert data["type"] == "VALUATION_REGIME_CHANGE"
    assert json.loads(webhooks.encode_body(webhooks.alert_event(row, now=now)))["data"] == data


def test_event_timestamps_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        webhooks.test_event(ENDPOINT_ID, now=datetime(2024, 5, 17, 22, 0))


# --- The developer receiver script ----------------------------------------------------------


def _receiver_script() -> dict[str, Any]:
    """The script's globals; it is not a package module, so it is run from its path."""
    return runpy.run_path(str(ROOT / "scripts" / "webhook_receiver.py"))


async def test_the_receiver_script_prints_verified_events_and_rejects_forgeries(
    client: httpx.AsyncClient,
) -> None:
    out = io.StringIO()
    server = _receiver_script()["make_server"](SECRET, 0, out)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        body = webhooks.encode_body(webhooks.alert_event(ALERT_ROW, now=datetime.now(UTC)))
        test_body = webhooks.encode_body(webhooks.test_event(ENDPOINT_ID, now=datetime.now(UTC)))

        verified = await _send(client, url, message_id="msg_alert", body=body)
        tested = await _send(client, url, message_id="msg_test", body=test_body)
        forged = await webhooks.send(
            client,
            url=url,
            secret=webhooks.new_secret(),
            message_id="msg_forged",
            body=body,
            allow_private=True,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert verified == SendResult(ok=True, status_code=204, error=None, gone=False)
    assert tested.ok
    assert forged.status_code == 400 and not forged.ok
    assert forged.error is not None and "No matching signature found" in forged.error
    assert out.getvalue().splitlines() == [
        "alert.created msg_alert ACME ACME fell below its 200-day average",
        f"webhook.test msg_test endpointId={ENDPOINT_ID}",
        "REJECTED msg_forged: No matching signature found",
    ]
