"""`python -m ingest deliver` as real processes: two at once, one killed mid-send, --follow."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable

import asyncpg

from tests.fixtures.delivery import DeliveryWorld
from tests.fixtures.ingest import run_ingest, start_ingest
from tests.fixtures.webhook_receiver import Receiver, Reply


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_deliverers_never_send_a_delivery_twice(
    pool: asyncpg.Pool, world: DeliveryWorld, receiver: Receiver, ingest_env: dict[str, str]
) -> None:
    user = await world.user()
    await world.endpoint(user, receiver.url())
    for i in range(40):
        await world.alert(user, f"T{i:03d}")
    receiver.script(*[Reply(delay=0.02)] * 40)  # slow enough that both processes overlap
    results = await asyncio.gather(
        run_ingest(["deliver", "--workers", "3"], ingest_env),
        run_ingest(["deliver", "--workers", "3"], ingest_env),
    )
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(sent) == 40 and set(sent.values()) == {1}
    rows = await world.deliveries(user)
    assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}


async def test_a_deliverer_killed_mid_send_loses_nothing(
    pool: asyncpg.Pool, world: DeliveryWorld, receiver: Receiver, ingest_env: dict[str, str]
) -> None:
    user = await world.user()
    await world.endpoint(user, receiver.url())
    await world.alert(user)
    receiver.script(Reply(delay=30))  # the first attempt hangs: the deliverer is killed then
    victim = await start_ingest(["deliver"], ingest_env, DELIVERY_LEASE_SECONDS="5")
    await wait_for(lambda: len(receiver.requests) == 1, 20, "the first attempt")
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    (held,) = await world.deliveries(user)
    assert held["status"] == "pending" and held["locked_by"] is not None

    # While the lease lasts nobody else sends it; after it expires the next run does.
    result = await run_ingest(["deliver"], ingest_env)
    assert result.code == 0 and len(receiver.requests) == 1
    await pool.execute("UPDATE deliveries SET locked_until = now() - interval '1 second'")
    result = await run_ingest(["deliver"], ingest_env)
    assert result.code == 0, result.stderr
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(held["id"])] * 2
    (done,) = await world.deliveries(user)
    assert done["status"] == "delivered" and done["locked_by"] is None


async def test_follow_is_woken_by_new_alerts_and_sigterm_releases_its_leases(
    pool: asyncpg.Pool, world: DeliveryWorld, receiver: Receiver, ingest_env: dict[str, str]
) -> None:
    user = await world.user()
    await world.endpoint(user, receiver.url())
    follower = await start_ingest(["deliver", "--follow"], ingest_env)
    try:
        await asyncio.sleep(1.0)  # let it LISTEN
        started = time.monotonic()
        await world.alert(user, "AAA")
        await wait_for(lambda: len(receiver.requests) == 1, 10, "the woken delivery")
        # Woken by the NOTIFY, not by the 5 s sweep (it may have just run: allow a margin).
        assert time.monotonic() - started < 4.5

        receiver.script(Reply(delay=30))
        await world.alert(user, "BBB")
        await wait_for(lambda: len(receiver.requests) == 2, 10, "the hanging delivery")
        signalled = time.monotonic()
        follower.send_signal(signal.SIGTERM)
        await asyncio.wait_for(follower.wait(), 20)
        assert time.monotonic() - signalled < 5  # the hanging send is cancelled, not awaited
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    assert follower.returncode == 0
    rows = {r["alert_id"]: r for r in await world.deliveries(user)}
    pending = [r for r in rows.values() if r["status"] == "pending"]
    # The interrupted send was not recorded and its lease is given back at once.
    assert len(pending) == 1 and pending[0]["locked_by"] is None
    assert pending[0]["attempts"] == 0
