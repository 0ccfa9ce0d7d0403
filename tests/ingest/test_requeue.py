"""`requeue` and daily's weekly re-check: failed and unavailable tickers get another backfill."""

from __future__ import annotations

import asyncpg

from tests.fixtures.ingest import run_ingest


async def seed(pool: asyncpg.Pool) -> None:
    """FAIL: newest job failed; DONE: completed; BUSY: processing; GONE/OLD: unavailable."""
    await pool.execute(
        """
        INSERT INTO entities (ticker, data_status, updated_at) VALUES
            ('FAIL', 'none', now()), ('DONE', 'ready', now()), ('BUSY', 'queued', now()),
            ('GONE', 'unavailable', now() - interval '1 day'),
            ('OLD', 'unavailable', now() - interval '8 days')
        """
    )
    await pool.execute(
        """
        INSERT INTO backfill_queue (ticker, status, requested_at) VALUES
            ('FAIL', 'completed', now() - interval '2 days'),
            ('FAIL', 'failed', now() - interval '1 day'),
            ('DONE', 'failed', now() - interval '2 days'),
            ('DONE', 'completed', now() - interval '1 day'),
            ('BUSY', 'failed', now() - interval '2 days'),
            ('BUSY', 'processing', now() - interval '1 minute')
        """
    )


async def pending(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT ticker, priority FROM backfill_queue WHERE status = 'pending'")
    return {row["ticker"]: row["priority"] for row in rows}


async def test_requeue_failed_unavailable_and_named(
    pool: asyncpg.Pool, ingest_env: dict[str, str]
) -> None:
    await seed(pool)
    failed = await run_ingest(["requeue", "--failed"], ingest_env)
    assert failed.code == 0, failed.stderr
    assert failed.stdout.strip() == "requeue: 1 tickers queued for backfill (FAIL)"
    assert await pending(pool) == {"FAIL": 1}

    unavailable = await run_ingest(["requeue", "--unavailable"], ingest_env)
    assert unavailable.code == 0 and "2 tickers queued" in unavailable.stdout
    assert await pending(pool) == {"FAIL": 1, "GONE": 1, "OLD": 1}
    statuses = await pool.fetch(
        "SELECT ticker, data_status FROM entities WHERE ticker IN ('GONE', 'OLD')"
    )
    assert {r["data_status"] for r in statuses} == {"queued"}

    named = await run_ingest(["requeue", "fail", "BUSY", "NEW.X"], ingest_env)
    assert named.code == 0, named.stderr
    # FAIL's pending job moves up; BUSY is being processed; NEW.X gets its first job.
    assert named.stdout.strip() == (
        "requeue: 2 tickers queued for backfill, 1 already being processed (FAIL, NEW.X)"
    )
    assert await pending(pool) == {"FAIL": 2, "GONE": 1, "OLD": 1, "NEW.X": 1}


async def test_requeue_needs_a_selection_and_valid_tickers(ingest_env: dict[str, str]) -> None:
    nothing = await run_ingest(["requeue"], ingest_env)
    assert nothing.code == 2
    assert nothing.stderr.strip() == (
        "error: requeue: name tickers, or pass --failed and/or --unavailable"
    )
    bad = await run_ingest(["requeue", "not a ticker!"], ingest_env)
    assert bad.code == 2 and "argument TICKER" in bad.stderr


async def test_daily_rechecks_tickers_unavailable_for_a_week(
    pool: asyncpg.Pool, ingest_env: dict[str, str]
) -> None:
    await seed(pool)
    result = await run_ingest(["daily"], ingest_env)
    assert "backfill: re-checking 1 unavailable tickers" in result.stdout, result.stdout
    tried = await pool.fetch(
        "SELECT DISTINCT ticker FROM backfill_queue WHERE ticker IN ('GONE', 'OLD')"
    )
    # OLD (marked 8 days ago) was asked again; GONE (yesterday) waits for its week.
    assert [r["ticker"] for r in tried] == ["OLD"]
