"""An API process is SIGKILLed under 50 live subscribers; they resume on a second process."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.fixtures.ws import (
    ServerProcess,
    WsClient,
    insert_alerts,
    make_entity,
    make_user,
    wait_for_subscribers,
)

pytestmark = pytest.mark.slow

SUBSCRIBERS = 50
USERS = 20  # several clients per user: each must see all of its user's alerts, once


class Subscription:
    """One client: subscribes on `first`, and after its socket dies resumes on `second`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.received: list[str] = []
        self.reconnected = asyncio.Event()
        self.live = asyncio.Event()

    async def _read(self, client: WsClient, until: asyncio.Event) -> None:
        while not until.is_set():
            try:
                message = await client.receive(0.2)
            except TimeoutError:
                continue
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            self.received.append(message["payload"]["data"]["alertCreated"]["id"])

    async def run(self, first: ServerProcess, second: ServerProcess, done: asyncio.Event) -> None:
        async with WsClient.connect(first.ws_url) as client:
            assert (await client.init(self.token))["type"] == "connection_ack"
            await client.subscribe("1")
            self.live.set()
            with contextlib.suppress(ConnectionClosed):
                await self._read(client, done)
                raise AssertionError("the first server's socket never closed")
        assert self.received, "no alert before the kill: `after` would not be exercised"
        after = self.received[-1]
        async with WsClient.connect(second.ws_url) as client:
            assert (await client.init(self.token))["type"] == "connection_ack"
            await client.subscribe("1", after=after)
            self.reconnected.set()
            await self._read(client, done)


async def test_subscribers_of_a_killed_process_resume_on_another_and_miss_nothing(
    start_server: Callable[..., ServerProcess],
    pool: asyncpg.Pool,
    make_token: Callable[..., str],
) -> None:
    first, second = start_server(), start_server()
    users = [await make_user(pool) for _ in range(USERS)]
    bystander = await make_user(pool)  # has alerts but no subscriber
    entity = await make_entity(pool)
    owners = [users[i % USERS] for i in range(SUBSCRIBERS)]
    subscriptions = [Subscription(make_token(owner)) for owner in owners]
    done = asyncio.Event()
    tasks = [asyncio.create_task(s.run(first, second, done)) for s in subscriptions]
    written: dict[uuid.UUID, list[str]] = defaultdict(list)
    rng = random.Random(7)

    async def write(batches: int) -> None:
        for _ in range(batches):
            chosen = rng.sample([*users, bystander], 3)
            ids = await insert_alerts(pool, [(u, entity) for u in chosen])
            for user, alert_id in zip(chosen, ids, strict=True):
                written[user].append(str(alert_id))
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(asyncio.gather(*(s.live.wait() for s in subscriptions)), 30)
        await wait_for_subscribers(first, SUBSCRIBERS, seconds=30)
        # Every user gets one alert before the kill, so every client resumes with `after`.
        first_ids = await insert_alerts(pool, [(u, entity) for u in users])
        for user, alert_id in zip(users, first_ids, strict=True):
            written[user].append(str(alert_id))
        writer = asyncio.create_task(write(150))  # ~4 s of writes: before, during, after
        await asyncio.sleep(0.5)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=10) == -signal.SIGKILL
        at_kill = sum(map(len, written.values()))
        await asyncio.wait_for(asyncio.gather(*(s.reconnected.wait() for s in subscriptions)), 30)
        while_down = sum(map(len, written.values())) - at_kill
        await wait_for_subscribers(second, SUBSCRIBERS, seconds=30)
        await writer
        assert while_down > 0, "no alert was written while the clients were reconnecting"
        assert sum(map(len, written.values())) - at_kill > while_down  # and some after

        deadline = time.monotonic() + 30
        while any(
            len(s.received) < len(written[owner])
            for s, owner in zip(subscriptions, owners, strict=True)
        ):
            assert time.monotonic() < deadline, "not every alert was delivered"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a late duplicate would arrive now
    finally:
        done.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert len(written[bystander]) > 0
    for subscription, owner in zip(subscriptions, owners, strict=True):
        assert len(subscription.received) == len(set(subscription.received)), "duplicate"
        assert sorted(subscription.received) == sorted(written[owner])
