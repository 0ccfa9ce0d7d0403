"""The deliveries outbox: rows written with each alert, claimed with a lease, sent, recorded.

Each channel's pending rows have their own partial indexes (migration 0010), so a claim reads
only its channel's rows; finished rows are deleted DELIVERY_RETENTION_DAYS after they finish.

A delivery is one alert (or a `webhook.test` event) for one webhook endpoint, or one alert for
the user's email digest. Deliverers claim due rows with `FOR UPDATE SKIP LOCKED` and a lease;
an outcome is recorded only by the lease holder, so a delivery is never sent twice at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum
from uuid import UUID

import asyncpg

from services.alert_record import PAYLOAD_COLUMNS
from services.db import Connection, Executor
from services.entities import check_limit
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id
from services.pagination import KeysetPage, page_of, position

MAX_PAGE_SIZE = 100
# An email claim looks for its users among this many of the oldest due rows per user wanted.
EMAIL_SCAN_ROWS_PER_USER = 5


class DeliveryChannel(StrEnum):
    """Where a delivery goes; the value is what deliveries.channel stores."""

    WEBHOOK = "webhook"
    EMAIL = "email"


# Every channel: what enqueue_for_alerts queues unless told otherwise.
ALL_CHANNELS: frozenset[DeliveryChannel] = frozenset(DeliveryChannel)


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


# What a webhook body and an email section are built from (the alert record's payload).
_ALERT_FIELDS = PAYLOAD_COLUMNS

DELIVERY_COLUMNS = """d.id, d.user_id, d.alert_id, d.channel, d.webhook_id, d.event_type,
    d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at,
    d.delivered_at"""

# When a user's next digest may go: now for IMMEDIATE, else 20 h / 6.5 days after the last one.
_DIGEST_DUE = """CASE u.email_digest
    WHEN 'daily' THEN greatest(now(), u.last_digest_sent_at + interval '20 hours')
    WHEN 'weekly' THEN greatest(now(), u.last_digest_sent_at + interval '156 hours')
    ELSE now() END"""

# In the alert's transaction: one row per enabled endpoint, one email row when the user has an
# email and has not turned email off. Re-running an evaluation inserts no alert, so no row.
# Linear in the alerts: per alert id, one probe of alert_history's primary key (once, shared by
# the channels), then of users' primary key and webhook_endpoints_user. `OFFSET 0` keeps each
# LATERAL a probe per row: flattened into joins, a chunk of thousands of alerts is planned as a
# hash join over a whole table.
_ENQUEUE_ALERTS = """
WITH a AS MATERIALIZED (
    SELECT h.id, h.user_id
    FROM unnest($1::uuid[]) AS n(id)
    CROSS JOIN LATERAL (
        SELECT h.id, h.user_id FROM alert_history h WHERE h.id = n.id OFFSET 0
    ) h
)
INSERT INTO deliveries (user_id, alert_id, channel, webhook_id, next_attempt_at)"""
_ENQUEUE_BRANCHES = {
    DeliveryChannel.WEBHOOK: """
SELECT a.user_id, a.id, 'webhook', w.id, now()
FROM a
CROSS JOIN LATERAL (
    SELECT e.id FROM webhook_endpoints e WHERE e.user_id = a.user_id AND e.enabled OFFSET 0
) w""",
    DeliveryChannel.EMAIL: f"""
SELECT a.user_id, a.id, 'email', NULL, coalesce({_DIGEST_DUE}, now())
FROM a
CROSS JOIN LATERAL (
    SELECT v.email_digest, v.last_digest_sent_at FROM users v
    WHERE v.id = a.user_id AND v.email IS NOT NULL AND v.email_digest <> 'off' OFFSET 0
) u""",  # noqa: S608
}


def _enqueue_sql(channels: Collection[DeliveryChannel]) -> str:
    """One INSERT ... SELECT over the branches of `channels` (a fixed text per channel set)."""
    branches = [sql for channel, sql in _ENQUEUE_BRANCHES.items() if channel in channels]
    return _ENQUEUE_ALERTS + "\nUNION ALL".join(branches) + "\nON CONFLICT DO NOTHING"


_ENQUEUE_TEST_SQL = """
INSERT INTO deliveries (user_id, channel, webhook_id, event_type)
VALUES ($1, 'webhook', $2, 'webhook.test')
RETURNING id
"""

_LEASE_FREE = "(d.locked_until IS NULL OR d.locked_until < now())"

# Webhook rows whose endpoint is enabled; a disabled endpoint's rows wait for re-enabling.
# The due rows are read from deliveries_webhook_due in its order: pending email rows, however
# many, are not in that index.
_CLAIM_WEBHOOKS_SQL = f"""
WITH due AS (
    SELECT d.id
    FROM deliveries d
    JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.enabled
    WHERE d.channel = 'webhook' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {_LEASE_FREE}
    ORDER BY d.next_attempt_at, d.id
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries x
SET locked_by = $1, locked_until = now() + make_interval(secs => $2), updated_at = now()
WHERE x.id = ANY (ARRAY(SELECT id FROM due))
RETURNING x.id
"""  # noqa: S608

# One given webhook delivery (testWebhook sends its event at once): a primary-key probe.
_CLAIM_ONE_WEBHOOK_SQL = f"""
WITH due AS (
    SELECT d.id
    FROM deliveries d
    JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.enabled
    WHERE d.id = $3 AND d.channel = 'webhook' AND d.status = 'pending'
      AND d.next_attempt_at <= now() AND {_LEASE_FREE}
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries x
SET locked_by = $1, locked_until = now() + make_interval(secs => $2), updated_at = now()
WHERE x.id = ANY (ARRAY(SELECT id FROM due))
RETURNING x.id
"""  # noqa: S608

_WEBHOOK_WORK_SQL = f"""
SELECT d.id AS delivery_id, d.user_id, d.event_type, d.attempts, d.webhook_id, w.url,
       w.secret, {_ALERT_FIELDS}
FROM deliveries d
JOIN webhook_endpoints w ON w.id = d.webhook_id
LEFT JOIN alert_history a ON a.id = d.alert_id
LEFT JOIN entities e ON e.id = a.entity_id
WHERE d.id = ANY($1::uuid[])
ORDER BY d.next_attempt_at, d.id
"""  # noqa: S608

# Users whose digest window is open and who have due email rows; all of a user's due rows are
# claimed together, so one message carries them. The users are found among the oldest
# claimable due rows (deliveries_email_due, in order, at most EMAIL_SCAN_ROWS_PER_USER rows per
# user wanted), so a claim reads a bounded slice of the queue, never every pending row; their
# rows are then read by user (deliveries_email_user).
_CLAIM_EMAIL_SQL = f"""
WITH oldest AS (
    SELECT d.user_id, d.next_attempt_at
    FROM deliveries d
    JOIN users u ON u.id = d.user_id
    WHERE d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {_LEASE_FREE}
      AND u.email IS NOT NULL AND u.email_digest <> 'off'
      AND (u.email_digest = 'immediate' OR u.last_digest_sent_at IS NULL
           OR u.last_digest_sent_at <= now() - CASE u.email_digest
                WHEN 'daily' THEN interval '20 hours' ELSE interval '156 hours' END)
    ORDER BY d.next_attempt_at
    LIMIT $4
),
due_users AS (
    SELECT user_id FROM oldest GROUP BY user_id ORDER BY min(next_attempt_at) LIMIT $3
),
due AS (
    SELECT d.id
    FROM deliveries d
    WHERE d.user_id IN (SELECT user_id FROM due_users)
      AND d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {_LEASE_FREE}
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries x
SET locked_by = $1, locked_until = now() + make_interval(secs => $2), updated_at = now()
WHERE x.id = ANY (ARRAY(SELECT id FROM due))
RETURNING x.id
"""  # noqa: S608

_EMAIL_WORK_SQL = f"""
SELECT d.id AS delivery_id, d.attempts, u.email, u.id AS user_id, {_ALERT_FIELDS}
FROM deliveries d
JOIN users u ON u.id = d.user_id
JOIN alert_history a ON a.id = d.alert_id
JOIN entities e ON e.id = a.entity_id
WHERE d.id = ANY($1::uuid[])
ORDER BY u.id, a.sent_at, a.id
"""  # noqa: S608

_DELIVERED_SQL = """
UPDATE deliveries d SET status = 'delivered', attempts = d.attempts + 1, delivered_at = now(),
    last_status_code = x.code, last_error = NULL, locked_by = NULL, locked_until = NULL,
    updated_at = now()
FROM unnest($1::uuid[], $3::int[]) AS x(id, code)
WHERE d.id = x.id AND d.locked_by = $2 AND d.status = 'pending'
RETURNING d.id, d.webhook_id
"""

# $5: the retry delays; the attempt after the last one is FAILED. $6 forces FAILED (permanent).
_FAILED_ATTEMPT_SQL = """
UPDATE deliveries SET
    attempts = attempts + 1,
    status = CASE WHEN $6 OR attempts + 1 > cardinality($5::int[]) THEN 'failed'
                  ELSE 'pending' END,
    next_attempt_at = CASE WHEN $6 OR attempts + 1 > cardinality($5::int[]) THEN next_attempt_at
                  ELSE now() + make_interval(secs => ($5::int[])[attempts + 1]) END,
    last_status_code = $3, last_error = left($4, 1000),
    locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE id = ANY($1::uuid[]) AND locked_by = $2 AND status = 'pending'
RETURNING id, status
"""

_DIGEST_SENT_SQL = "UPDATE users SET last_digest_sent_at = now() WHERE id = $1"

_RELEASE_SQL = """
UPDATE deliveries SET locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE locked_by = $1 AND status = 'pending'
"""

# A user who turns email off (or loses the address) gets no digest of what is still queued.
_CANCEL_EMAIL_SQL = """
UPDATE deliveries d SET status = 'failed', last_error = $2, locked_by = NULL,
    locked_until = NULL, updated_at = now()
WHERE d.user_id = $1 AND d.channel = 'email' AND d.status = 'pending'
"""
# A changed digest frequency reschedules what is queued.
_RESCHEDULE_EMAIL_SQL = f"""
UPDATE deliveries d SET next_attempt_at = coalesce({_DIGEST_DUE}, now()), updated_at = now()
FROM users u
WHERE u.id = $1 AND d.user_id = u.id AND d.channel = 'email' AND d.status = 'pending'
  AND d.attempts = 0
"""  # noqa: S608

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
_ENDPOINT_ENABLED_SQL = "SELECT enabled FROM webhook_endpoints WHERE id = $1"

# --- writing ----------------------------------------------------------------------------


async def enqueue_for_alerts(
    conn: Connection,
    alert_ids: Sequence[UUID],
    *,
    channels: Collection[DeliveryChannel] = ALL_CHANNELS,
) -> None:
    """Queue each new alert for its user's enabled webhooks and email, in the caller's tx.

    Only `channels` are queued: a channel with no sender configured gets no rows.
    """
    if alert_ids and channels:
        await conn.execute(_enqueue_sql(channels), list(alert_ids))


async def enqueue_test(conn: Connection, user_id: UUID, endpoint_id: UUID) -> UUID:
    """A `webhook.test` delivery for the endpoint, due now."""
    delivery_id: UUID = await conn.fetchval(_ENQUEUE_TEST_SQL, user_id, endpoint_id)
    return delivery_id


async def cancel_email(conn: Connection, user_id: UUID, reason: str) -> None:
    """Queued email deliveries of the user become FAILED with `reason`."""
    await conn.execute(_CANCEL_EMAIL_SQL, user_id, reason)


async def reschedule_email(conn: Connection, user_id: UUID) -> None:
    """Queued, never-tried email deliveries follow the user's current digest frequency."""
    await conn.execute(_RESCHEDULE_EMAIL_SQL, user_id)


# --- deliverer side -----------------------------------------------------------------------


async def claim_webhooks(
    pool: asyncpg.Pool,
    worker: str,
    *,
    lease_seconds: float,
    limit: int,
    only: UUID | None = None,
) -> list[asyncpg.Record]:
    """Claim up to `limit` due webhook deliveries, or just `only`; rows carry endpoint, alert."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            if only is None:
                claimed = await conn.fetch(_CLAIM_WEBHOOKS_SQL, worker, lease_seconds, limit)
            else:
                claimed = await conn.fetch(_CLAIM_ONE_WEBHOOK_SQL, worker, lease_seconds, only)
        ids = [r["id"] for r in claimed]
        if not ids:
            return []
        return list(await conn.fetch(_WEBHOOK_WORK_SQL, ids))


async def claim_email(
    pool: asyncpg.Pool, worker: str, *, lease_seconds: float, users: int
) -> list[asyncpg.Record]:
    """Claim every due email delivery of up to `users` users whose digest window is open."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            claimed = await conn.fetch(
                _CLAIM_EMAIL_SQL, worker, lease_seconds, users, users * EMAIL_SCAN_ROWS_PER_USER
            )
            ids = [r["id"] for r in claimed]
        if not ids:
            return []
        return list(await conn.fetch(_EMAIL_WORK_SQL, ids))


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
) -> list[asyncpg.Record]:
    """Record a failed attempt: retry on the schedule, or FAILED after its last delay."""
    return list(
        await conn.fetch(
            _FAILED_ATTEMPT_SQL, list(ids), worker, status_code, error, list(schedule), permanent
        )
    )


async def mark_digest_sent(conn: Connection, user_id: UUID) -> None:
    """Start the user's next DAILY/WEEKLY window now."""
    await conn.execute(_DIGEST_SENT_SQL, user_id)


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
    check_limit(first, "first", MAX_PAGE_SIZE)
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
    if current["webhook_id"] is not None and not await pool.fetchval(
        _ENDPOINT_ENABLED_SQL, current["webhook_id"]
    ):
        raise BadUserInput("the webhook is disabled: enable it before redelivering")
    row = await pool.fetchrow(_REDELIVER_SQL, current["id"], user_id)
    if row is None:  # redelivered concurrently
        return await get(pool, user_id, raw_id)
    return row
