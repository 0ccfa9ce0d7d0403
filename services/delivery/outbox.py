"""The deliveries outbox: rows written with each alert, claimed with a lease, sent, recorded.

Every channel (services.delivery.registry) goes through the same statements here: its branch
of the enqueue, its claim over its own partial index of due rows (migration 0010), and one
way of recording an attempt, a retry on the schedule and a final FAILED. Finished rows are
deleted DELIVERY_RETENTION_DAYS after they finish.

Deliverers claim due rows with `FOR UPDATE SKIP LOCKED` and a lease; an outcome is recorded
only by the lease holder, so a delivery is never sent twice at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum
from uuid import UUID

import asyncpg

from services.db import Connection, Executor
from services.delivery.channel import Channel
from services.delivery.registry import ALL_CHANNELS, CHANNELS, DeliveryChannel, channel_of
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id
from services.pagination import KeysetPage, check_page_size, page_of, position

MAX_PAGE_SIZE = 100


class DeliveryStatus(StrEnum):
    """A delivery's state; the value is what deliveries.status stores."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class EmailDigest(StrEnum):
    """How often a user gets email; the value is what users.email_digest stores."""

    OFF = "off"
    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"


# Each channel's target column (webhook_id, …) after the columns every delivery has.
_TARGET_COLUMNS = [c.target_column for c in CHANNELS if c.target_column is not None]
DELIVERY_COLUMNS = ", ".join(
    [
        "d.id, d.user_id, d.alert_id, d.channel, d.event_type, d.status, d.attempts",
        "d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at",
        *(f"d.{column}" for column in _TARGET_COLUMNS),
    ]
)

# In the alert's transaction: each channel's rows for the new alerts (its `enqueue_sql` over
# `a`). Re-running an evaluation inserts no alert, so no row. Linear in the alerts: per alert
# id, one probe of alert_history's primary key (once, shared by the channels), then the
# channels' own probes. `OFFSET 0` keeps each LATERAL a probe per row: flattened into joins, a
# chunk of thousands of alerts is planned as a hash join over a whole table. A channel's target
# id lands in its own column.
_ENQUEUE_ALERTS = """
WITH a AS MATERIALIZED (
    SELECT h.id, h.user_id
    FROM unnest($1::uuid[]) AS n(id)
    CROSS JOIN LATERAL (
        SELECT h.id, h.user_id FROM alert_history h WHERE h.id = n.id OFFSET 0
    ) h
), q (user_id, alert_id, channel, target_id, next_attempt_at) AS ({branches}
)
INSERT INTO deliveries (user_id, alert_id, channel, {targets}next_attempt_at)
SELECT q.user_id, q.alert_id, q.channel, {target_values}q.next_attempt_at FROM q
ON CONFLICT DO NOTHING"""


def _enqueue_sql(channels: Collection[str]) -> str:
    """One INSERT ... SELECT over the branches of `channels` (a fixed text per channel set)."""
    chosen = [c for c in CHANNELS if c.name in channels]
    return _ENQUEUE_ALERTS.format(
        branches="\nUNION ALL".join(c.enqueue_sql for c in chosen),
        targets="".join(f"{column}, " for column in _TARGET_COLUMNS),
        target_values="".join(
            f"CASE WHEN q.channel = '{c.name}' THEN q.target_id END, "
            for c in CHANNELS
            if c.target_column is not None
        ),
    )


_DELIVERED_SQL = """
UPDATE deliveries d SET status = 'delivered', attempts = d.attempts + 1, delivered_at = now(),
    last_status_code = x.code, last_error = NULL, locked_by = NULL, locked_until = NULL,
    updated_at = now()
FROM unnest($1::uuid[], $3::int[]) AS x(id, code)
WHERE d.id = x.id AND d.locked_by = $2 AND d.status = 'pending'
RETURNING d.id
"""

# $5: the retry delays; the attempt after the last one is FAILED. $6 forces FAILED (permanent).
# $7: the receiver's Retry-After in seconds (or NULL), which only ever delays the next attempt.
_FAILED_ATTEMPT_SQL = """
UPDATE deliveries SET
    attempts = attempts + 1,
    status = CASE WHEN $6 OR attempts + 1 > cardinality($5::int[]) THEN 'failed'
                  ELSE 'pending' END,
    next_attempt_at = CASE WHEN $6 OR attempts + 1 > cardinality($5::int[]) THEN next_attempt_at
                  ELSE now() + make_interval(
                      secs => greatest(($5::int[])[attempts + 1], coalesce($7::float8, 0))) END,
    last_status_code = $3, last_error = left($4, 1000),
    locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE id = ANY($1::uuid[]) AND locked_by = $2 AND status = 'pending'
RETURNING id, status
"""

_RELEASE_SQL = """
UPDATE deliveries SET locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE locked_by = $1 AND status = 'pending'
"""

# Retention: finished rows (their updated_at is when they finished, migration 0010) older than
# the cutoff, oldest first, a bounded batch per statement from deliveries_finished. The outer
# conditions are rechecked on each row, so a row redelivered meanwhile (pending again) stays.
_DELETE_FINISHED_SQL = """
DELETE FROM deliveries d
WHERE d.id IN (
    SELECT f.id FROM deliveries f
    WHERE f.status <> 'pending' AND f.updated_at < now() - make_interval(days => $1)
    ORDER BY f.updated_at
    LIMIT $2
)
  AND d.status <> 'pending' AND d.updated_at < now() - make_interval(days => $1)
"""


def _page_sql(status: bool, channel: bool) -> str:
    """The page query with only the filters given (placeholders $5, $6 in that order)."""
    filters = []
    if status:
        filters.append("d.status")
    if channel:
        filters.append("d.channel")
    conditions = "".join(f"  AND {column} = ${n}\n" for n, column in enumerate(filters, 5))
    return f"""
SELECT {DELIVERY_COLUMNS}
FROM deliveries d
WHERE d.user_id = $1 AND (d.created_at, d.id) < ($2::timestamptz, $3::uuid)
{conditions}ORDER BY d.created_at DESC, d.id DESC
LIMIT $4
"""  # noqa: S608


# One fixed text per combination of filters, rather than `$n IS NULL OR …`, which a generic
# plan keeps as a filter evaluated over the user's rows; each reads deliveries_user_created.
_PAGE_SQL = {(s, c): _page_sql(s, c) for s in (False, True) for c in (False, True)}
_GET_SQL = f"SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = $1 AND d.user_id = $2"  # noqa: S608
_REDELIVER_SQL = f"""
UPDATE deliveries d SET status = 'pending', next_attempt_at = now(), locked_by = NULL,
    locked_until = NULL, updated_at = now()
WHERE d.id = $1 AND d.user_id = $2 AND d.status = 'failed'
RETURNING {DELIVERY_COLUMNS}
"""  # noqa: S608

# --- writing ----------------------------------------------------------------------------


async def enqueue_for_alerts(
    conn: Connection,
    alert_ids: Sequence[UUID],
    *,
    channels: Collection[DeliveryChannel] = ALL_CHANNELS,
) -> None:
    """Queue each new alert on every channel in `channels` for its user, in the caller's tx.

    Only `channels` are queued: a channel with no sender configured gets no rows.
    """
    if alert_ids and channels:
        await conn.execute(_enqueue_sql(channels), list(alert_ids))


# --- deliverer side -----------------------------------------------------------------------


async def claim(
    pool: asyncpg.Pool,
    channel: Channel,
    worker: str,
    *,
    lease_seconds: float,
    limit: int,
    only: UUID | None = None,
) -> list[asyncpg.Record]:
    """Lease up to `limit` due deliveries of `channel` (or just `only`); their work rows."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            if only is None:
                claimed = await conn.fetch(channel.claim_sql, worker, lease_seconds, limit)
            elif channel.claim_one_sql is not None:
                claimed = await conn.fetch(channel.claim_one_sql, worker, lease_seconds, only)
            else:
                raise ValueError(f"the {channel.name} channel sends no single delivery at once")
        ids = [r["id"] for r in claimed]
        if not ids:
            return []
        return list(await conn.fetch(channel.work_sql, ids))


async def mark_delivered(
    conn: Connection, ids: Sequence[UUID], worker: str, status_codes: Sequence[int | None]
) -> list[asyncpg.Record]:
    """Record successes in one statement; returns the rows this worker still held.

    A row missing from the result had lost its lease: another deliverer owns it now.
    """
    return list(await conn.fetch(_DELIVERED_SQL, list(ids), worker, list(status_codes)))


async def mark_failed_attempt(
    conn: Connection,
    ids: Sequence[UUID],
    worker: str,
    *,
    status_code: int | None,
    error: str,
    schedule: Sequence[int],
    permanent: bool = False,
    retry_after: float | None = None,
) -> list[asyncpg.Record]:
    """Record a failed attempt: retry on the schedule (or later, per `retry_after`), or FAILED."""
    return list(
        await conn.fetch(
            _FAILED_ATTEMPT_SQL,
            list(ids),
            worker,
            status_code,
            error,
            list(schedule),
            permanent,
            retry_after,
        )
    )


async def release(db: Executor, worker: str) -> int:
    """Give back every lease `worker` holds (a clean shutdown); returns how many."""
    result = await db.execute(_RELEASE_SQL, worker)
    return int(result.rsplit(" ", 1)[-1])


async def delete_finished(db: Executor, *, older_than_days: int, limit: int) -> int:
    """Delete up to `limit` delivered or failed rows finished over `older_than_days` ago."""
    result = await db.execute(_DELETE_FINISHED_SQL, older_than_days, limit)
    return int(result.rsplit(" ", 1)[-1])


# --- API side ------------------------------------------------------------------------------


async def list_page(
    db: Executor,
    user_id: UUID,
    *,
    first: int,
    after: str | None,
    status: str | None,
    channel: str | None,
) -> KeysetPage:
    """`first` deliveries of the user after the cursor, newest first, optionally filtered."""
    check_page_size(first, "first", MAX_PAGE_SIZE)
    created_at, row_id = position(after)
    filters = [value for value in (status, channel) if value is not None]
    sql = _PAGE_SQL[status is not None, channel is not None]
    rows = await db.fetch(sql, user_id, created_at, row_id, first + 1, *filters)
    return page_of(list(rows), first, "created_at")


async def get(db: Executor, user_id: UUID, raw_id: str) -> asyncpg.Record:
    """The user's delivery; NOT_FOUND for a malformed, unknown or another user's id."""
    row = await db.fetchrow(_GET_SQL, parse_owned_id(raw_id, "delivery"), user_id)
    if row is None:
        raise NotFound("delivery not found")
    return row


async def redeliver(pool: asyncpg.Pool, user_id: UUID, raw_id: str) -> asyncpg.Record:
    """A FAILED delivery back to PENDING, due now: one more attempt, FAILED again if it fails."""
    current = await get(pool, user_id, raw_id)
    if current["status"] != DeliveryStatus.FAILED:
        raise BadUserInput(f"only a FAILED delivery can be redelivered (it is {current['status']})")
    refusal = await channel_of(current["channel"]).redeliver_refusal(pool, current)
    if refusal is not None:
        raise BadUserInput(refusal)
    row = await pool.fetchrow(_REDELIVER_SQL, current["id"], user_id)
    if row is None:  # redelivered concurrently
        return await get(pool, user_id, raw_id)
    return row
