"""Graceful shutdown of a real `python server.py` process on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.fixtures.ws import ServerProcess, WsClient, make_user, wait_for_subscribers

StartServer = Callable[..., ServerProcess]
MakeToken = Callable[..., str]
GRACE_SECONDS = 6
# It updates its user's row, which the test holds locked for as long as it wants.
SLOW_MUTATION = "mutation { updateSettings(input: {alertsEnabled: false}) { id } }"


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def wait_for_lock_waiter(pool: asyncpg.Pool, seconds: float = 10.0) -> None:
    """Until some backend of this database waits on a lock (the in-flight request)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the request never reached the locked row")


async def wait_for_exit(server: ServerProcess, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    raise AssertionError(f"server still running {seconds}s after the signal")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_finishes_in_flight_requests_and_closes_websockets_with_1001(
    start_server: StartServer, pool: asyncpg.Pool, make_token: MakeToken, signum: int
) -> None:
    server = start_server(SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS))
    slow_user, subscriber = await make_user(pool), await make_user(pool)
    url = f"http://127.0.0.1:{server.port}/graphql"
    async with (
        WsClient.connect(server.ws_url) as client,
        httpx.AsyncClient(timeout=30) as http,
        pool.acquire() as locker,
    ):
        assert (await client.init(make_token(subscriber)))["type"] == "connection_ack"
        await client.subscribe("1")
        await wait_for_subscribers(server, 1)
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", slow_user)
        request = asyncio.create_task(
            http.post(
                url,
                json={"query": SLOW_MUTATION},
                headers={"authorization": f"Bearer {make_token(slow_user)}"},
            )
        )
        await wait_for_lock_waiter(pool)
        signalled = time.monotonic()
        server.proc.send_signal(signum)

        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.receive(seconds=GRACE_SECONDS)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert time.monotonic() - signalled < 2
        assert refuses_connections(server.port)
        assert not request.done()  # still waiting for the row: the server waits for it

        await asyncio.sleep(0.5)
        await lock.rollback()
        response = await request
    assert response.status_code == 200
    assert response.json()["data"] == {"updateSettings": {"id": str(slow_user)}}
    assert await wait_for_exit(server, GRACE_SECONDS) == 0
    assert time.monotonic() - signalled < GRACE_SECONDS
    assert "Traceback" not in server.log_path.read_text()


async def test_a_request_that_outlives_the_grace_period_does_not_hold_the_process(
    start_server: StartServer, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    server = start_server(SHUTDOWN_GRACE_SECONDS="2")
    user = await make_user(pool)
    async with httpx.AsyncClient(timeout=30) as http, pool.acquire() as locker:
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user)
            request = asyncio.create_task(
                http.post(
                    f"http://127.0.0.1:{server.port}/graphql",
                    json={"query": SLOW_MUTATION},
                    headers={"authorization": f"Bearer {make_token(user)}"},
                )
            )
            await wait_for_lock_waiter(pool)
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert await wait_for_exit(server, 10) == 0
            exited_after = time.monotonic() - signalled
        # Cut off when the grace period ends: uvicorn cancels it and answers 500.
        assert (await request).status_code == 500
    assert 2 <= exited_after < 6
