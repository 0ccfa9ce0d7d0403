"""The per-process LISTEN fan-out against a real PostgreSQL (no server, no Strawberry)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.db import database_name
from services.live.hub import AlertEvent, AlertHub, HubStopped, Subscriber, SubscriberTooSlow
from tests.fixtures.ws import (
    connections_refused,
    insert_alert_in,
    insert_alerts,
    make_entity,
    make_user,
    terminate_listeners,
)


@pytest.fixture
async def hub(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[AlertHub]:
    hub = AlertHub(database_url, pool, queue_size=300, keepalive_seconds=0.5)
    await hub.start()
    yield hub
    await hub.stop()


async def take(subscriber: Subscriber, count: int, seconds: float = 10.0) -> list[AlertEvent]:
    return [await asyncio.wait_for(subscriber.get(), seconds) for _ in range(count)]


async def assert_empty(subscriber: Subscriber, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        event = await asyncio.wait_for(subscriber.get(), seconds)
        raise AssertionError(f"unexpected event {event}")


async def test_routes_each_alert_to_its_owner_only(hub: AlertHub, pool: asyncpg.Pool) -> None:
    alice, bob = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    with hub.subscribe(alice) as a1, hub.subscribe(alice) as a2, hub.subscribe(bob) as b:
        ids = await insert_alerts(pool, [(alice, entity)] * 3)
        bob_ids = await insert_alerts(pool, [(bob, entity)])
        for subscriber in (a1, a2):
            events = await take(subscriber, 3)
            assert [e.id for e in events] == ids
            assert {e.user_id for e in events} == {alice}
        assert [e.id for e in await take(b, 1)] == bob_ids
        await assert_empty(b)
        await assert_empty(a1, 0.1)


async def test_a_burst_in_one_transaction_is_resolved_and_delivered_in_order(
    hub: AlertHub, pool: asyncpg.Pool
) -> None:
    user = await make_user(pool)
    entities = [await make_entity(pool) for _ in range(4)]
    with hub.subscribe(user) as subscriber:
        ids = await insert_alerts(pool, [(user, entities[i % 4]) for i in range(250)])
        events = await take(subscriber, 250)
    assert [e.id for e in events] == ids
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_bad_payloads_and_unknown_ids_are_ignored(hub: AlertHub, pool: asyncpg.Pool) -> None:
    user = await make_user(pool)
    entity = await make_entity(pool)
    with hub.subscribe(user) as subscriber:
        await pool.execute("SELECT pg_notify('alert_created', 'not-a-uuid')")
        await pool.execute("SELECT pg_notify('alert_created', $1)", str(uuid.uuid4()))
        ids = await insert_alerts(pool, [(user, entity)])
        assert [e.id for e in await take(subscriber, 1)] == ids
        await assert_empty(subscriber)


async def test_an_overflowing_subscriber_is_closed_and_others_are_unaffected(
    database_url: str, pool: asyncpg.Pool
) -> None:
    hub = AlertHub(database_url, pool, queue_size=3)
    await hub.start()
    try:
        slow_user, other_user = await make_user(pool), await make_user(pool)
        entity = await make_entity(pool)
        overflowed: list[Subscriber] = []
        slow = hub.subscribe(slow_user, on_overflow=overflowed.append)
        with hub.subscribe(other_user) as other:
            await insert_alerts(pool, [(slow_user, entity)] * 10)
            ids = await insert_alerts(pool, [(other_user, entity)] * 2)
            assert [e.id for e in await take(other, 2)] == ids
            assert overflowed == [slow]
            assert slow.closed
            with pytest.raises(SubscriberTooSlow):
                await slow.get()
            assert hub.subscriber_count == 1
            more = await insert_alerts(pool, [(other_user, entity)])
            assert [e.id for e in await take(other, 1)] == more
    finally:
        await hub.stop()


async def test_reconnect_catches_up_exactly_once_after_the_listener_is_killed(
    hub: AlertHub, pool: asyncpg.Pool, database_url: str, server_dsn: str
) -> None:
    user = await make_user(pool)
    entity = await make_entity(pool)
    with hub.subscribe(user) as subscriber:
        before = await insert_alerts(pool, [(user, entity)] * 2)
        assert [e.id for e in await take(subscriber, 2)] == before
        async with connections_refused(server_dsn, database_name(database_url)):
            assert await terminate_listeners(server_dsn, database_name(database_url)) == 1
            await asyncio.sleep(0.3)
            assert not hub.connected
            missed = await insert_alerts(pool, [(user, entity)] * 3)  # nobody is listening
            await asyncio.sleep(0.3)
        events = await take(subscriber, 3)
        assert [e.id for e in events] == missed
        assert hub.connected and hub.reconnects == 1
        after = await insert_alerts(pool, [(user, entity)])
        assert [e.id for e in await take(subscriber, 1)] == after
        await assert_empty(subscriber)


async def test_catch_up_covers_a_transaction_that_began_before_the_last_seen_alert(
    hub: AlertHub, pool: asyncpg.Pool, database_url: str, server_dsn: str
) -> None:
    """A slow transaction's sent_at predates alerts already seen; it still arrives once."""
    user = await make_user(pool)
    entity = await make_entity(pool)
    with hub.subscribe(user) as subscriber:
        async with pool.acquire() as slow_conn:
            slow_tx = slow_conn.transaction()
            await slow_tx.start()
            await slow_conn.execute("SELECT now()")  # it began here
            seen = await insert_alerts(pool, [(user, entity)])
            newest = await take(subscriber, 1)
            assert [e.id for e in newest] == seen
            await asyncio.sleep(1.2)  # several keepalives pass
            row = await insert_alert_in(slow_conn, user, entity, date(1999, 1, 1))
            assert newest[0].row["sent_at"] > row["sent_at"]
            async with connections_refused(server_dsn, database_name(database_url)):
                await terminate_listeners(server_dsn, database_name(database_url))
                await asyncio.sleep(0.3)
                await slow_tx.commit()  # committed while the listener is down
                await asyncio.sleep(0.3)
        assert [e.id for e in await take(subscriber, 1)] == [row["id"]]
        await assert_empty(subscriber)


async def test_an_alert_whose_transaction_outlives_any_time_window_is_caught_up_exactly_once(
    hub: AlertHub, pool: asyncpg.Pool, database_url: str, server_dsn: str
) -> None:
    """The old catch-up re-read a fixed window of sent_at; commit order has no window.

    The transaction stays open far longer than the hub's keepalive (and than the window the
    old hub was given in this test, 0.5 s), other alerts are delivered meanwhile, then it
    commits while the LISTEN connection is down.
    """
    user = await make_user(pool)
    entity = await make_entity(pool)
    database = database_name(database_url)
    with hub.subscribe(user) as subscriber:
        async with pool.acquire() as slow_conn:
            slow_tx = slow_conn.transaction()
            await slow_tx.start()
            await slow_conn.execute("SELECT now()")  # it began here
            delivered = []
            for _ in range(3):
                await asyncio.sleep(1.0)
                ids = await insert_alerts(pool, [(user, entity)])
                delivered += [e.id for e in await take(subscriber, 1)]
                assert delivered[-1] == ids[0]
            slow = await insert_alert_in(slow_conn, user, entity, date(1998, 1, 1))
            async with connections_refused(server_dsn, database):
                assert await terminate_listeners(server_dsn, database) == 1
                await asyncio.sleep(0.3)
                assert not hub.connected
                await slow_tx.commit()  # its notification reaches nobody
                missed = await insert_alerts(pool, [(user, entity)])
                await asyncio.sleep(0.3)
        caught_up = await take(subscriber, 2)
        assert [e.id for e in caught_up] == [slow["id"], *missed]  # in commit order
        assert hub.connected and hub.reconnects == 1
        after = await insert_alerts(pool, [(user, entity)])
        assert [e.id for e in await take(subscriber, 1)] == after
        await assert_empty(subscriber)


async def test_events_follow_commit_order_not_sent_at(hub: AlertHub, pool: asyncpg.Pool) -> None:
    user = await make_user(pool)
    entity = await make_entity(pool)
    with hub.subscribe(user) as subscriber:
        async with pool.acquire() as slow_conn, slow_conn.transaction():
            await slow_conn.execute("SELECT now()")  # it began here
            first = await insert_alerts(pool, [(user, entity)])
            slow = await insert_alert_in(slow_conn, user, entity, date(1997, 1, 1))
        events = await take(subscriber, 2)
    assert [e.id for e in events] == [first[0], slow["id"]]
    assert events[0].seq < events[1].seq
    assert events[0].row["sent_at"] > events[1].row["sent_at"]


async def test_stop_ends_every_subscription(database_url: str, pool: asyncpg.Pool) -> None:
    hub = AlertHub(database_url, pool)
    await hub.start()
    subscriber = hub.subscribe(await make_user(pool))
    await hub.stop()
    with pytest.raises(HubStopped):
        await asyncio.wait_for(subscriber.get(), 2)
    with pytest.raises(HubStopped):
        hub.subscribe(uuid.uuid4())
    assert hub.subscriber_count == 0
