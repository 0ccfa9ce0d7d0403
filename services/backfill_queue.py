"""Backfill queue, API side: race-free enqueue with priority bump, latest job, pending count."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from services.entities import Connection, Executor

# One statement: a pending row for the ticker gets priority + 1 (the partial unique index
# is the arbiter), otherwise a fresh pending job is inserted — also after a failed or
# completed job. A ticker already being processed gets no second job.
_ENQUEUE_SQL = """
INSERT INTO backfill_queue AS q (ticker, requested_by)
SELECT t, $2::uuid FROM unnest($1::text[]) AS t
WHERE NOT EXISTS (
    SELECT 1 FROM backfill_queue p WHERE p.ticker = t AND p.status = 'processing'
)
ORDER BY t
ON CONFLICT (ticker) WHERE status = 'pending'
DO UPDATE SET priority = q.priority + 1, updated_at = now()
RETURNING id, ticker, requested_by, requested_at, status, priority, started_at,
    completed_at, error_message, retry_count, next_attempt_at
"""

# Newest job per ticker; the (ticker, requested_at DESC) index serves each probe.
_LATEST_SQL = """
SELECT j.*
FROM unnest($1::text[]) AS k(ticker)
CROSS JOIN LATERAL (
    SELECT id, ticker, requested_by, requested_at, status, priority, started_at,
           completed_at, error_message, retry_count, next_attempt_at
    FROM backfill_queue q
    WHERE q.ticker = k.ticker
    ORDER BY q.requested_at DESC, q.created_at DESC
    LIMIT 1
) j
"""

_PENDING_COUNT_SQL = "SELECT count(*) FROM backfill_queue WHERE status = 'pending'"


async def enqueue(conn: Connection, ticker: str, requested_by: UUID | None) -> None:
    """Queue a backfill for `ticker`, or raise the priority of its pending job by 1."""
    await enqueue_many(conn, [ticker], requested_by)


async def enqueue_many(
    conn: Connection, tickers: Sequence[str], requested_by: UUID | None
) -> list[asyncpg.Record]:
    """`enqueue` for several distinct tickers in one statement; returns the touched jobs."""
    if not tickers:
        return []
    return list(await conn.fetch(_ENQUEUE_SQL, sorted(set(tickers)), requested_by))


async def latest_jobs(db: Executor, tickers: Sequence[str]) -> dict[str, asyncpg.Record]:
    """The newest job of each ticker that has one."""
    rows = await db.fetch(_LATEST_SQL, list(tickers))
    return {row["ticker"]: row for row in rows}


async def pending_count(db: Executor) -> int:
    """How many jobs are waiting."""
    count: int = await db.fetchval(_PENDING_COUNT_SQL)
    return count
