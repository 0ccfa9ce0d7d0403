"""Sends to receivers connect only to an address that was checked (DNS answers that change)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import pytest

from services.delivery import webhooks
from services.delivery.channels.webhook import webhook_client
from services.settings import Settings

SECRET = "whsec_" + "a" * 43 + "="
PUBLIC_LOOKING = "93.184.216.34"


@dataclasses.dataclass
class Listener:
    """A loopback TCP listener that only counts the connections it accepts."""

    port: int
    accepted: int = 0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    state = Listener(port=0)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.accepted += 1
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def _rebinding_dns(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """`name` answers a public-looking address once, then 127.0.0.1; returns the answers given."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    given: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in (name, name.encode()):
            return await real(host, port, *args, **kwargs)
        answer = PUBLIC_LOOKING if not given else "127.0.0.1"
        given.append(answer)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return given


def _no_traffic_off_this_machine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """TCP connects to loopback (or to a name) go ahead; to any other address they fail here.

    Returns the hosts connects were asked for. Nothing in a test may reach a public address.
    """
    asked: list[str] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(
        self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        asked.append(host)
        try:
            off_machine = not ipaddress.ip_address(host).is_loopback
        except ValueError:
            off_machine = False  # a name: resolved by the (faked) resolver inside
        if off_machine:
            raise httpcore.ConnectError("the test network stops here")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return asked


async def test_a_send_connects_to_the_checked_address_not_a_second_dns_answer(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name passed the check with a public answer, then answered 127.0.0.1 to the connect:
    # the send must go to the checked address, never to the loopback listener.
    given = _rebinding_dns(monkeypatch, "hooks.example.test")
    asked = _no_traffic_off_this_machine(monkeypatch)
    production = dataclasses.replace(Settings(), app_env="production", webhook_allow_private=False)

    async with webhook_client(production) as client:
        result = await webhooks.send(
            client,
            url=f"https://hooks.example.test:{listener.port}/hook",
            secret=SECRET,
            message_id="msg_1",
            body=b"{}",
            allow_private=False,
        )

    assert listener.accepted == 0
    assert given == [PUBLIC_LOOKING]  # resolved once
    assert asked == [PUBLIC_LOOKING]  # and connected to what was checked
    assert not result.ok
    assert result.error == "connect failed"  # no address, no system error text


async def test_a_name_that_answers_loopback_at_send_time_is_refused_without_a_connect(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    asked = _no_traffic_off_this_machine(monkeypatch)
    production = dataclasses.replace(Settings(), app_env="production", webhook_allow_private=False)

    async with webhook_client(production) as client:
        result = await webhooks.send(
            client,
            url=f"https://inside.example.test:{listener.port}/hook",
            secret=SECRET,
            message_id="msg_1",
            body=b"{}",
            allow_private=False,
        )

    assert listener.accepted == 0 and asked == []
    assert result.status_code is None
    assert (
        result.error == "refused: host 'inside.example.test' does not resolve to a public address"
    )
    assert "127.0.0.1" not in (result.error or "")
