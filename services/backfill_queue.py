"""The backfill queue: race-free enqueue (API side) and leased claims (worker side).

API side: enqueue with a priority bump, the latest job per ticker, the pending count.
Worker side: claim with a lease, heartbeat, complete, retry with back-off, fail, reclaim.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from services.db import Connection, Executor


class BackfillStatus(StrEnum):
    """A backfill job's state; the value is what backfill_queue.status stores."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class BackfillErrorCategory(StrEnum):
    """What the API may say about a failed or retrying job; the raw text stays for operators."""

    SOURCE_UNAVAILABLE = "source unavailable"
    NO_DATA = "no data at source"
    REJECTED = "rejected by source"
    INTERNAL = "internal error"


log = logging.getLogger(__name__)

# One statement: a pending row for the ticker gets priority + 1 when this requester has not
# asked for it yet (the partial unique index is the arbiter), otherwise a fresh pending job is
# inserted — also after a failed or completed job. A ticker already being processed gets no
# second job. Priority counts distinct users: re-adding a stock does not move it up the queue.
# A request without a user (an operator's requeue) always counts.
_ENQUEUE_SQL = """
WITH job AS (
    INSERT INTO backfill_queue AS q (ticker, requested_by)
    SELECT t, $2::uuid FROM unnest($1::text[]) AS t
    WHERE NOT EXISTS (
        SELECT 1 FROM backfill_queue p WHERE p.ticker = t AND p.status = 'processing'
    )
    ORDER BY t
    ON CONFLICT (ticker) WHERE status = 'pending'
    DO UPDATE SET
        priority = q.priority + CASE
            WHEN EXCLUDED.requested_by IS NULL THEN 1
            WHEN q.requested_by = EXCLUDED.requested_by THEN 0
            WHEN EXISTS (
                SELECT 1 FROM backfill_requesters r
                WHERE r.job_id = q.id AND r.user_id = EXCLUDED.requested_by
            ) THEN 0
            ELSE 1
        END,
        updated_at = now()
    RETURNING id, ticker, requested_by, requested_at, status, priority, started_at,
        completed_at, error_category, retry_count, next_attempt_at
), requester AS (
    INSERT INTO backfill_requesters (job_id, user_id)
    SELECT id, $2::uuid FROM job WHERE $2::uuid IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT * FROM job
"""

# Newest job per ticker; the (ticker, requested_at DESC) index serves each probe.
_LATEST_SQL = """
SELECT j.*
FROM unnest($1::text[]) AS k(ticker)
CROSS JOIN LATERAL (
    SELECT id, ticker, requested_by, requested_at, status, priority, started_at,
           completed_at, error_category, retry_count, next_attempt_at
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


# Tickers whose newest job failed (none waiting or running): worth another try.
_FAILED_TICKERS_SQL = """
SELECT ticker FROM (
    SELECT DISTINCT ON (ticker) ticker, status
    FROM backfill_queue
    ORDER BY ticker, requested_at DESC, created_at DESC
) newest
WHERE status = 'failed'
ORDER BY ticker
"""
# Tickers the source had no data for; $1 (days, or NULL for all): only those marked longer ago.
_UNAVAILABLE_TICKERS_SQL = """
SELECT ticker FROM entities
WHERE data_status = 'unavailable'
  AND ($1::int IS NULL OR updated_at < now() - make_interval(days => $1::int))
ORDER BY ticker
"""
_MARK_QUEUED_SQL = """
UPDATE entities SET data_status = 'queued', updated_at = now()
WHERE ticker = ANY($1::text[]) AND NOT has_price_data AND data_status <> 'queued'
"""


async def mark_queued(db: Executor, tickers: Sequence[str]) -> None:
    """Entities of `tickers` still without price data show as queued for backfill."""
    await db.execute(_MARK_QUEUED_SQL, list(tickers))


async def failed_tickers(db: Executor) -> list[str]:
    """Tickers whose newest backfill job is FAILED."""
    return [row["ticker"] for row in await db.fetch(_FAILED_TICKERS_SQL)]


async def unavailable_tickers(db: Executor, older_than_days: int | None = None) -> list[str]:
    """Tickers marked unavailable (only those marked more than `older_than_days` ago)."""
    return [row["ticker"] for row in await db.fetch(_UNAVAILABLE_TICKERS_SQL, older_than_days)]


async def requeue(pool: asyncpg.Pool, tickers: Sequence[str]) -> list[str]:
    """Queue a fresh backfill for each ticker (a pending one gets +1); returns those queued.

    A ticker being processed right now is skipped: its running job already is the retry.
    """
    if not tickers:
        return []
    async with pool.acquire() as conn, conn.transaction():
        jobs = await enqueue_many(conn, tickers, None)
        queued = sorted({job["ticker"] for job in jobs})
        await mark_queued(conn, queued)
    return queued


# --- worker side ------------------------------------------------------------------------

# Delay before retry 1, 2 and 3 of a transiently failed job; after the last one it fails.
RETRY_DELAYS_SECONDS = (60, 300, 1800)
MAX_RETRIES = len(RETRY_DELAYS_SECONDS)
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class ClaimedJob:
    """A queue row this worker now holds in `processing`."""

    id: uuid.UUID
    ticker: str
    priority: int
    retry_count: int
    requested_at: datetime
    started_at: datetime
    locked_by: str


class LeaseLost(Exception):
    """The row is no longer ours (reclaimed after the lease expired); nothing may be committed."""


# The claim (docs/architecture.md, "Backfill queue"). The NOT EXISTS keeps a second job for a
# ticker waiting while another worker holds a live lease on the same ticker, so no ticker is
# processed twice concurrently.
CLAIM_SQL = """
UPDATE backfill_queue
SET status = 'processing', started_at = now(), updated_at = now(), locked_by = $1
WHERE id = (
    SELECT q.id FROM backfill_queue q
    WHERE q.status = 'pending'
      AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())
      AND NOT EXISTS (
          SELECT 1 FROM backfill_queue held
          WHERE held.ticker = q.ticker AND held.status = 'processing'
            AND held.updated_at > now() - make_interval(secs => $2)
      )
    ORDER BY q.priority DESC, q.requested_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, ticker, priority, retry_count, requested_at, started_at, locked_by
"""

HEARTBEAT_SQL = """
UPDATE backfill_queue SET updated_at = now()
WHERE id = $1 AND status = 'processing' AND locked_by = $2
"""

COMPLETE_SQL = """
UPDATE backfill_queue
SET status = 'completed', completed_at = now(), updated_at = now(), error_message = NULL,
    error_category = NULL, next_attempt_at = NULL
WHERE id = $1 AND status = 'processing' AND locked_by = $2
"""

FAIL_SQL = """
UPDATE backfill_queue
SET status = 'failed', completed_at = now(), updated_at = now(), error_message = $3,
    error_category = $4, next_attempt_at = NULL
WHERE id = $1 AND status = 'processing' AND ($2::text IS NULL OR locked_by = $2)
RETURNING ticker
"""

# Back to pending unless a newer pending row for the ticker exists (the partial unique index
# allows one); that case is folded into the newer row by `_supersede`.
RETRY_SQL = """
UPDATE backfill_queue q
SET status = 'pending', retry_count = q.retry_count + 1, error_message = $3,
    error_category = $5, next_attempt_at = now() + make_interval(secs => $4), locked_by = NULL,
    updated_at = now()
WHERE q.id = $1 AND q.status = 'processing' AND ($2::text IS NULL OR q.locked_by = $2)
  AND NOT EXISTS (
      SELECT 1 FROM backfill_queue p WHERE p.ticker = q.ticker AND p.status = 'pending'
  )
RETURNING q.retry_count, q.next_attempt_at
"""

SUPERSEDE_SQL = """
WITH mine AS (
    UPDATE backfill_queue
    SET status = 'failed', completed_at = now(), updated_at = now(), next_attempt_at = NULL,
        error_message = $3, error_category = $5
    WHERE id = $1 AND status = 'processing' AND ($2::text IS NULL OR locked_by = $2)
    RETURNING ticker, priority
)
UPDATE backfill_queue p
SET priority = GREATEST(p.priority, mine.priority),
    next_attempt_at = GREATEST(p.next_attempt_at, now() + make_interval(secs => $4)),
    updated_at = now()
FROM mine
WHERE p.ticker = mine.ticker AND p.status = 'pending'
RETURNING p.id
"""

EXPIRED_SQL = """
SELECT id, ticker, retry_count, locked_by FROM backfill_queue
WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1)
ORDER BY updated_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

ENTITY_NOT_QUEUED_SQL = """
UPDATE entities
SET data_status = CASE WHEN has_price_data THEN 'ready' ELSE 'none' END, updated_at = now()
WHERE ticker = $1 AND data_status = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM backfill_queue q
      WHERE q.ticker = $1 AND q.status IN ('pending', 'processing')
  )
"""


def _clip(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


async def claim(conn: Connection, worker: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the highest-priority due pending job, or None when nothing is claimable now."""
    row = await conn.fetchrow(CLAIM_SQL, worker, float(lease_seconds))
    return None if row is None else ClaimedJob(**dict(row))


async def heartbeat(conn: Connection, job: ClaimedJob) -> bool:
    """Extend the lease; False when the job is no longer ours."""
    result = await conn.execute(HEARTBEAT_SQL, job.id, job.locked_by)
    return result.endswith(" 1")


async def complete(conn: Connection, job: ClaimedJob) -> None:
    """Mark the job completed; raises LeaseLost if it was reclaimed (run inside a transaction)."""
    result = await conn.execute(COMPLETE_SQL, job.id, job.locked_by)
    if not result.endswith(" 1"):
        raise LeaseLost(
            f"backfill job {job.id} ({job.ticker}) is no longer held by {job.locked_by}"
        )


async def fail_permanently(
    conn: Connection, job: ClaimedJob, message: str, category: BackfillErrorCategory
) -> None:
    """`failed` at once with `message`; raises LeaseLost if the job is no longer ours."""
    row = await conn.fetchrow(FAIL_SQL, job.id, job.locked_by, _clip(message), category)
    if row is None:
        raise LeaseLost(
            f"backfill job {job.id} ({job.ticker}) is no longer held by {job.locked_by}"
        )


@dataclass(frozen=True)
class RetryOutcome:
    """What a transient failure did to the job."""

    status: str  # 'pending' (retry scheduled), 'failed' (out of retries) or 'superseded'
    retry_count: int
    next_attempt_at: datetime | None


async def retry_or_fail(
    conn: Connection,
    job_id: uuid.UUID,
    worker: str | None,
    retry_count: int,
    error: str,
    category: BackfillErrorCategory,
    *,
    immediately: bool = False,
) -> RetryOutcome:
    """Schedule retry `retry_count + 1` after its backoff (or now), or fail after MAX_RETRIES."""
    async with conn.transaction():
        if retry_count >= MAX_RETRIES:
            message = f"gave up after {MAX_RETRIES} retries: {error}"
            row = await conn.fetchrow(FAIL_SQL, job_id, worker, _clip(message), category)
            if row is None:
                raise LeaseLost(f"backfill job {job_id} is no longer held by {worker}")
            await conn.execute(ENTITY_NOT_QUEUED_SQL, row["ticker"])
            return RetryOutcome("failed", retry_count, None)
        delay = 0.0 if immediately else float(RETRY_DELAYS_SECONDS[retry_count])
        try:
            async with conn.transaction():
                row = await conn.fetchrow(RETRY_SQL, job_id, worker, _clip(error), delay, category)
        except asyncpg.UniqueViolationError:
            row = None  # a pending row for the ticker was enqueued concurrently
        if row is not None:
            return RetryOutcome("pending", row["retry_count"], row["next_attempt_at"])
        message = f"superseded by a newer pending request; last error: {error}"
        await conn.fetchrow(SUPERSEDE_SQL, job_id, worker, _clip(message), delay, category)
        status = await conn.fetchval("SELECT status FROM backfill_queue WHERE id = $1", job_id)
        if status != "failed":
            raise LeaseLost(f"backfill job {job_id} is no longer held by {worker}")
        return RetryOutcome("superseded", retry_count, None)


async def retry_transient(
    conn: Connection, job: ClaimedJob, error: str, category: BackfillErrorCategory
) -> RetryOutcome:
    """A transient failure of our job: backoff 1 min / 5 min / 30 min, then `failed`."""
    return await retry_or_fail(conn, job.id, job.locked_by, job.retry_count, error, category)


# A stopping worker hands its job back as it was: due now, same retry count, no lease.
RELEASE_SQL = """
UPDATE backfill_queue
SET status = 'pending', locked_by = NULL, started_at = NULL, next_attempt_at = NULL,
    updated_at = now()
WHERE id = $1 AND status = 'processing' AND locked_by = $2
RETURNING id
"""


async def release(conn: Connection, job: ClaimedJob) -> str:
    """Put our job back to pending at once; 'pending', 'superseded' or 'gone' (not ours)."""
    async with conn.transaction():
        try:
            async with conn.transaction():
                row = await conn.fetchrow(RELEASE_SQL, job.id, job.locked_by)
        except asyncpg.UniqueViolationError:
            # A newer pending request for the ticker exists: it carries the work on.
            message = "superseded by a newer pending request (released by a stopping worker)"
            await conn.fetchrow(
                SUPERSEDE_SQL, job.id, job.locked_by, message, 0.0, BackfillErrorCategory.INTERNAL
            )
            return "superseded"
        return "gone" if row is None else "pending"


async def reclaim_expired(conn: Connection, lease_seconds: float, limit: int = 50) -> int:
    """Return `processing` rows whose holder stopped heartbeating to the queue; count them."""
    reclaimed = 0
    async with conn.transaction():
        rows = await conn.fetch(EXPIRED_SQL, float(lease_seconds), limit)
        for row in rows:
            error = f"worker {row['locked_by']} stopped renewing its lease (presumed dead)"
            # The holder died, the source did not fail: retry now, not after a backoff.
            outcome = await retry_or_fail(
                conn,
                row["id"],
                None,
                row["retry_count"],
                error,
                BackfillErrorCategory.INTERNAL,
                immediately=True,
            )
            log.warning(
                "reclaimed backfill job %s (%s) from %s, whose lease expired: now %s",
                row["id"],
                row["ticker"],
                row["locked_by"],
                outcome.status,
            )
            reclaimed += 1
    return reclaimed
