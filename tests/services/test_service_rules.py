"""Service-level rules: cursors, price windows, enqueue semantics, the limit under races."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from services import backfill_queue, watchlists
from services.errors import BadUserInput
from services.pagination import decode_cursor, encode_cursor
from services.price_chart import price_window
from tests.fixtures.api import ApiData


def test_cursor_round_trips_with_microseconds_and_offset() -> None:
    stamp = dt.datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    row_id = uuid.uuid4()
    cursor = encode_cursor(stamp, row_id)
    assert decode_cursor(cursor) == (stamp, row_id)
    assert str(row_id) not in cursor  # opaque to clients


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "djJ8eHw",
        "bm90IGEgY3Vyc29y",
        encode_cursor(dt.datetime(2025, 1, 1), uuid.uuid4()),
    ],
)
def test_malformed_cursors_are_bad_user_input(cursor: str) -> None:
    with pytest.raises(BadUserInput):
        decode_cursor(cursor)


def test_price_window_defaults_and_limits() -> None:
    today = dt.date(2025, 3, 1)
    assert price_window(None, None, today) == (dt.date(2024, 3, 1), today)
    assert price_window(None, dt.date(2020, 1, 10), today) == (
        dt.date(2019, 1, 10),
        dt.date(2020, 1, 10),
    )
    assert price_window(dt.date(2015, 3, 1), None, today) == (dt.date(2015, 3, 1), today)
    assert price_window(dt.date(2024, 2, 29), dt.date(2024, 2, 29)) == (
        dt.date(2024, 2, 29),
        dt.date(2024, 2, 29),
    )
    assert price_window(dt.date(2014, 2, 28), dt.date(2024, 2, 29))[0] == dt.date(2014, 2, 28)
    with pytest.raises(BadUserInput):
        price_window(dt.date(2014, 2, 27), dt.date(2024, 2, 29))
    with pytest.raises(BadUserInput):
        price_window(dt.date(2025, 3, 2), dt.date(2025, 3, 1))


async def test_enqueue_bumps_pending_and_requeues_after_completion_or_failure(
    pool: asyncpg.Pool, api_data: ApiData
) -> None:
    user = await api_data.user()
    async with pool.acquire() as conn:
        await backfill_queue.enqueue(conn, "AAPL", user)
        await backfill_queue.enqueue(conn, "AAPL", None)
        await backfill_queue.enqueue(conn, "AAPL", None)
    rows = await pool.fetch("SELECT status, priority, requested_by FROM backfill_queue")
    assert [tuple(r) for r in rows] == [("pending", 3, user)]
    for finished in ("completed", "failed"):
        await pool.execute(f"UPDATE backfill_queue SET status = '{finished}'")
        async with pool.acquire() as conn:
            await backfill_queue.enqueue(conn, "AAPL", None)
        assert (
            await pool.fetchval("SELECT priority FROM backfill_queue WHERE status = 'pending'") == 1
        )
        await pool.execute("DELETE FROM backfill_queue WHERE status <> 'pending'")
    await pool.execute("UPDATE backfill_queue SET status = 'processing'")
    async with pool.acquire() as conn:
        await backfill_queue.enqueue(conn, "AAPL", None)
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 1
    assert await backfill_queue.pending_count(pool) == 0
    latest = await backfill_queue.latest_jobs(pool, ["AAPL", "NONE"])
    assert list(latest) == ["AAPL"] and latest["AAPL"]["status"] == "processing"


async def test_backfill_priority_counts_distinct_requesting_users(
    pool: asyncpg.Pool, api_data: ApiData
) -> None:
    pusher, other = await api_data.user(), await api_data.user()
    for _ in range(30):
        async with pool.acquire() as conn:
            await backfill_queue.enqueue(conn, "PUSH", pusher)
    assert await pool.fetchval("SELECT priority FROM backfill_queue") == 1
    async with pool.acquire() as conn:
        await backfill_queue.enqueue(conn, "PUSH", other)
        await backfill_queue.enqueue(conn, "PUSH", other)
    assert await pool.fetchval("SELECT priority FROM backfill_queue") == 2
    requesters = await pool.fetch("SELECT user_id FROM backfill_requesters ORDER BY user_id")
    assert sorted(r["user_id"] for r in requesters) == sorted([pusher, other])
    # A fresh job after the last one failed starts counting again.
    await pool.execute("UPDATE backfill_queue SET status = 'failed'")
    async with pool.acquire() as conn:
        await backfill_queue.enqueue(conn, "PUSH", pusher)
        await backfill_queue.enqueue(conn, "PUSH", pusher)
    pending = "SELECT priority FROM backfill_queue WHERE status = 'pending'"
    assert await pool.fetchval(pending) == 1


async def test_concurrent_enqueues_leave_one_pending_job(pool: asyncpg.Pool) -> None:
    async def enqueue() -> None:
        async with pool.acquire() as conn:
            await backfill_queue.enqueue(conn, "RACE", None)

    await asyncio.gather(*(enqueue() for _ in range(5)))
    rows = await pool.fetch("SELECT status, priority FROM backfill_queue")
    assert [tuple(r) for r in rows] == [("pending", 5)]


async def test_watchlist_limit_holds_under_concurrent_adds(
    pool: asyncpg.Pool, api_data: ApiData
) -> None:
    user = await api_data.user()
    await api_data.entities([(f"W{n:03d}", None) for n in range(99)])
    await pool.execute(
        "INSERT INTO watchlists (user_id, entity_id) SELECT $1, id FROM entities", user
    )

    results = await asyncio.gather(
        *(watchlists.add_stock(pool, user, t) for t in ("NEWA", "NEWB", "NEWC")),
        return_exceptions=True,
    )

    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, BadUserInput) for r in results) == 2
    assert await pool.fetchval("SELECT count(*) FROM watchlists WHERE user_id = $1", user) == 100
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 1
    assert await pool.fetchval("SELECT count(*) FROM entities") == 100
