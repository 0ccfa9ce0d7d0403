"""The worker side of the backfill queue against real PostgreSQL: claim, retry, fail, reclaim."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import asyncpg
import pytest

from services import backfill_queue as claims
from services.db import Connection
from tests.fixtures.ingest import queue_tickers

LEASE = 1800.0
UNAVAILABLE = claims.BackfillErrorCategory.SOURCE_UNAVAILABLE


async def job_row(pool: asyncpg.Pool, ticker: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT *, now() AS db_now FROM backfill_queue WHERE ticker = $1 "
        "ORDER BY requested_at DESC LIMIT 1",
        ticker,
    )
    assert row is not None
    return row


async def test_claim_takes_highest_priority_then_oldest(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["AAA", "BBB", "CCC"])
    await pool.execute("UPDATE backfill_queue SET priority = 5 WHERE ticker = 'CCC'")
    async with pool.acquire() as conn:
        order = [(await claims.claim(conn, "w1", LEASE)) for _ in range(4)]
    assert [job.ticker if job else None for job in order] == ["CCC", "AAA", "BBB", None]
    row = await job_row(pool, "CCC")
    assert row["status"] == "processing" and row["locked_by"] == "w1"
    assert row["started_at"] is not None


async def test_claim_skips_jobs_not_yet_due(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["LATER", "NOW"])
    await pool.execute(
        "UPDATE backfill_queue SET next_attempt_at = now() + interval '1 minute', priority = 9 "
        "WHERE ticker = 'LATER'"
    )
    async with pool.acquire() as conn:
        job = await claims.claim(conn, "w", LEASE)
        assert job is not None and job.ticker == "NOW"
        assert await claims.claim(conn, "w", LEASE) is None


async def test_concurrent_claims_never_share_a_job(pool: asyncpg.Pool, database_url: str) -> None:
    tickers = [f"T{i:03d}" for i in range(60)]
    await queue_tickers(pool, tickers)
    connections = [await asyncpg.connect(database_url) for _ in range(8)]
    try:

        async def drain(conn: asyncpg.Connection, name: str) -> list[str]:
            taken = []
            while job := await claims.claim(conn, name, LEASE):
                taken.append(job.ticker)
            return taken

        results = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(connections)))
    finally:
        for conn in connections:
            await conn.close()
    taken = [t for part in results for t in part]
    assert sorted(taken) == tickers  # each exactly once
    assert sum(1 for part in results if part) > 1  # really concurrent


async def test_second_job_for_a_ticker_waits_while_one_is_processing(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["DUP"])
    async with pool.acquire() as conn:
        first = await claims.claim(conn, "w1", LEASE)
        assert first is not None
        await queue_tickers(conn, ["DUP"])  # a newer request while the first is running
        assert await claims.claim(conn, "w2", LEASE) is None
        await claims.complete(conn, first)
        second = await claims.claim(conn, "w2", LEASE)
    assert second is not None and second.ticker == "DUP" and second.id != first.id


async def test_transient_failures_back_off_1_5_30_minutes_then_fail(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["FLAKY"])
    expected = [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30)]
    async with pool.acquire() as conn:
        for attempt, delay in enumerate(expected, start=1):
            await conn.execute("UPDATE backfill_queue SET next_attempt_at = NULL")
            job = await claims.claim(conn, "w", LEASE)
            assert job is not None and job.retry_count == attempt - 1
            outcome = await claims.retry_transient(conn, job, "HTTP 503", UNAVAILABLE)
            row = await job_row(pool, "FLAKY")
            assert outcome.status == "pending" and row["status"] == "pending"
            assert row["retry_count"] == attempt
            assert row["locked_by"] is None and row["error_message"] == "HTTP 503"
            assert abs(row["next_attempt_at"] - row["db_now"] - delay) < timedelta(seconds=5)
            assert await claims.claim(conn, "w", LEASE) is None  # not due yet
        await conn.execute("UPDATE backfill_queue SET next_attempt_at = NULL")
        job = await claims.claim(conn, "w", LEASE)
        assert job is not None
        outcome = await claims.retry_transient(conn, job, "HTTP 503 again", UNAVAILABLE)
    row = await job_row(pool, "FLAKY")
    assert outcome.status == "failed" and row["status"] == "failed"
    assert row["retry_count"] == 3 and row["completed_at"] is not None
    assert row["error_message"] == "gave up after 3 retries: HTTP 503 again"
    status = await pool.fetchval("SELECT data_status FROM entities WHERE ticker = 'FLAKY'")
    assert status == "none"  # no longer queued, and it has no data


async def claimed_with_a_newer_request(conn: Connection, ticker: str) -> claims.ClaimedJob:
    """Claim `ticker`'s job, then queue a newer pending request for the same ticker."""
    await queue_tickers(conn, [ticker])
    job = await claims.claim(conn, "w", LEASE)
    assert job is not None
    await queue_tickers(conn, [ticker])
    return job


async def test_retry_folds_into_a_newer_pending_request(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        job = await claimed_with_a_newer_request(conn, "BUSY")
        await conn.execute("UPDATE backfill_queue SET priority = 0 WHERE status = 'pending'")
        outcome = await claims.retry_transient(conn, job, "timeout", UNAVAILABLE)
    rows = await pool.fetch("SELECT * FROM backfill_queue ORDER BY requested_at")
    assert outcome.status == "superseded"
    assert [r["status"] for r in rows] == ["failed", "pending"]
    assert "superseded by a newer pending request" in rows[0]["error_message"]
    assert rows[1]["priority"] == 1  # inherited the higher priority
    assert rows[1]["next_attempt_at"] is not None  # and the backoff


async def test_permanent_failure_and_lost_lease(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["GONE", "MINE"])
    async with pool.acquire() as conn:
        gone = await claims.claim(conn, "w", LEASE)
        mine = await claims.claim(conn, "w", LEASE)
        assert gone is not None and mine is not None
        await claims.fail_permanently(
            conn, gone, "no rows at the source", claims.BackfillErrorCategory.NO_DATA
        )
        await conn.execute("UPDATE backfill_queue SET locked_by = 'other' WHERE id = $1", mine.id)
        with pytest.raises(claims.LeaseLost):
            await claims.complete(conn, mine)
        assert not await claims.heartbeat(conn, mine)
    row = await job_row(pool, "GONE")
    assert row["status"] == "failed" and row["error_message"] == "no rows at the source"
    assert row["retry_count"] == 0


async def test_expired_lease_is_reclaimed_and_counted(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["DEAD", "ALIVE"])
    async with pool.acquire() as conn:
        dead = await claims.claim(conn, "dead-worker", LEASE)
        alive = await claims.claim(conn, "live-worker", LEASE)
        assert dead is not None and alive is not None
        await conn.execute(
            "UPDATE backfill_queue SET updated_at = now() - interval '31 minutes' WHERE id = $1",
            dead.id,
        )
        assert await claims.reclaim_expired(conn, LEASE) == 1
        again = await claims.claim(conn, "next-worker", LEASE)
    assert again is not None and again.id == dead.id and again.retry_count == 1
    row = await job_row(pool, "ALIVE")
    assert row["status"] == "processing" and row["locked_by"] == "live-worker"
    dead_row = await job_row(pool, "DEAD")
    assert dead_row["locked_by"] == "next-worker"
    assert "dead-worker stopped renewing its lease" in dead_row["error_message"]


async def test_reclaim_does_not_collide_with_a_newer_pending_row(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["TWICE"])
    async with pool.acquire() as conn:
        dead = await claims.claim(conn, "dead-worker", LEASE)
        assert dead is not None
        await conn.execute("UPDATE backfill_queue SET updated_at = now() - interval '1 hour'")
        await queue_tickers(conn, ["TWICE"])  # allowed: the processing row is not pending
        assert await claims.reclaim_expired(conn, LEASE) == 1
        job = await claims.claim(conn, "next-worker", LEASE)
    rows = await pool.fetch("SELECT status, id FROM backfill_queue ORDER BY requested_at")
    assert [r["status"] for r in rows] == ["failed", "processing"]
    assert job is not None and job.id == rows[1]["id"]


async def test_reclaim_after_three_deaths_fails_the_job(pool: asyncpg.Pool) -> None:
    await queue_tickers(pool, ["POISON"])
    async with pool.acquire() as conn:
        for _ in range(4):
            job = await claims.claim(conn, "w", LEASE)
            assert job is not None
            await conn.execute("UPDATE backfill_queue SET updated_at = now() - interval '1 hour'")
            await claims.reclaim_expired(conn, LEASE)
    row = await job_row(pool, "POISON")
    assert row["status"] == "failed" and row["retry_count"] == 3
    assert row["error_message"].startswith("gave up after 3 retries: worker w stopped")


async def test_release_puts_the_job_back_due_now_and_only_the_holder_can(
    pool: asyncpg.Pool,
) -> None:
    await queue_tickers(pool, ["HELD"])
    await pool.execute("UPDATE backfill_queue SET retry_count = 1")
    async with pool.acquire() as conn:
        job = await claims.claim(conn, "w", LEASE)
        assert job is not None
        impostor = dataclasses.replace(job, locked_by="other")
        assert await claims.release(conn, impostor) == "gone"
        assert (await job_row(pool, "HELD"))["status"] == "processing"
        assert await claims.release(conn, job) == "pending"
        row = await job_row(pool, "HELD")
        assert (row["status"], row["locked_by"], row["started_at"]) == ("pending", None, None)
        assert row["retry_count"] == 1 and row["next_attempt_at"] is None
        again = await claims.claim(conn, "w2", LEASE)  # due at once, no lease to wait out
        assert again is not None and again.id == job.id
        assert await claims.release(conn, job) == "gone"  # no longer ours


async def test_release_folds_into_a_newer_pending_request(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        job = await claimed_with_a_newer_request(conn, "BUSY")
        assert await claims.release(conn, job) == "superseded"
    rows = await pool.fetch("SELECT * FROM backfill_queue ORDER BY requested_at")
    assert [r["status"] for r in rows] == ["failed", "pending"]
    assert "released by a stopping worker" in rows[0]["error_message"]
