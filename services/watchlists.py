"""Watchlists: the joined item query, add (one transaction), remove, per-stock alert switch."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from services import backfill_queue, entities
from services.db import Connection, Executor, lock_for_transaction
from services.errors import BadUserInput, Conflict, NotFound
from services.tickers import normalize_ticker

MAX_WATCHLIST_SIZE = 100

# Everything a watchlist item shows, in one statement whatever the length: the entity, when
# the user's view was last evaluated, the last alert, the watcher count, the latest signal
# (`signal_*`, which is also the user's view) and the newest backfill job (`job_*`).
ITEMS_SQL = """
SELECT e.id AS entity_id, e.ticker, e.name, e.sector, e.exchange, e.is_etf, e.data_status,
       e.has_price_data, e.has_fundamental_data, e.price_data_min_date, e.price_data_max_date,
       e.fundamental_data_min_date, e.fundamental_data_max_date, e.last_data_update,
       w.added_at, w.alerts_enabled,
       CASE WHEN sig.computed_at > w.added_at THEN sig.computed_at END AS last_evaluated_at,
       la.last_alert_at,
       coalesce((SELECT c.watchers FROM entity_watch_counts c WHERE c.entity_id = e.id), 0)
           AS watcher_count,
       sig.as_of AS signal_as_of, sig.close AS signal_close, sig.sma200 AS signal_sma200,
       sig.trend_position AS signal_trend_position,
       sig.valuation_metric AS signal_valuation_metric,
       sig.valuation_multiple AS signal_valuation_multiple,
       sig.valuation_percentile AS signal_valuation_percentile,
       sig.valuation_regime AS signal_valuation_regime, sig.eps_ttm AS signal_eps_ttm,
       sig.fundamental_direction AS signal_fundamental_direction,
       sig.states::text AS signal_states,  -- decoded only when a field asks for the states
       sig.computed_at AS signal_computed_at,
       job.status AS job_status, job.priority AS job_priority,
       job.requested_at AS job_requested_at, job.retry_count AS job_retry_count,
       job.error_category AS job_error_category, job.completed_at AS job_completed_at,
       job.started_at AS job_started_at, job.next_attempt_at AS job_next_attempt_at
FROM watchlists w
JOIN entities e ON e.id = w.entity_id
LEFT JOIN LATERAL (
    SELECT max(a.sent_at) AS last_alert_at
    FROM alert_history a
    WHERE a.entity_id = w.entity_id AND a.user_id = w.user_id
) la ON true
LEFT JOIN LATERAL (
    SELECT * FROM entity_signals x WHERE x.entity_id = w.entity_id ORDER BY x.as_of DESC LIMIT 1
) sig ON true
LEFT JOIN LATERAL (
    SELECT * FROM backfill_queue q
    WHERE q.ticker = e.ticker
    ORDER BY q.requested_at DESC, q.created_at DESC
    LIMIT 1
) job ON true
WHERE w.user_id = $1 AND ($2::uuid IS NULL OR w.entity_id = $2)
ORDER BY w.added_at DESC, w.id DESC
"""

_USER_EXISTS_SQL = "SELECT 1 FROM users WHERE id = $1"

# The count runs on this statement's snapshot, i.e. before its own inserts; the user row
# lock taken first makes it include every committed concurrent add.
_INSERT_SQL = """
WITH added AS (
    INSERT INTO watchlists (user_id, entity_id)
    SELECT $1, unnest($2::uuid[])
    ON CONFLICT (user_id, entity_id) DO NOTHING
    RETURNING entity_id
)
SELECT ARRAY(SELECT entity_id FROM added) AS added,
       (SELECT count(*) FROM watchlists WHERE user_id = $1) AS before_count
"""

_REMOVE_SQL = """
DELETE FROM watchlists w USING entities e
WHERE w.entity_id = e.id AND w.user_id = $1 AND e.ticker = $2
RETURNING w.entity_id
"""

_SET_ALERTS_SQL = """
UPDATE watchlists w SET alerts_enabled = $3
FROM entities e
WHERE w.entity_id = e.id AND w.user_id = $1 AND e.ticker = $2
RETURNING w.entity_id
"""


async def list_items(db: Executor, user_id: UUID) -> list[asyncpg.Record]:
    """The user's watchlist rows, newest `added_at` first."""
    return list(await db.fetch(ITEMS_SQL, user_id, None))


async def get_item(db: Executor, user_id: UUID, entity_id: UUID) -> asyncpg.Record:
    """One watchlist row of the user; NotFound when that stock is not on it."""
    row = await db.fetchrow(ITEMS_SQL, user_id, entity_id)
    if row is None:
        raise NotFound("that stock is not on your watchlist")
    return row


async def add_many(
    conn: Connection, user_id: UUID, tickers: Sequence[str], *, existing_ok: bool
) -> dict[str, asyncpg.Record]:
    """Watch normalized `tickers` inside the caller's transaction; returns entity rows.

    Creates missing entities and settings rows, keeps existing settings, and queues a
    backfill for each newly watched entity without price data. Conflict when nothing was
    new and `existing_ok` is false; BadUserInput beyond MAX_WATCHLIST_SIZE.
    """
    # One user's adds serialise here, so the size limit holds under concurrent requests.
    await lock_for_transaction(conn, f"watchlist:{user_id}")
    if await conn.fetchval(_USER_EXISTS_SQL, user_id) is None:
        raise NotFound("user not found")
    await entities.check_in_universe(conn, tickers)
    by_ticker = await entities.get_or_create(conn, tickers)
    ids = [row["entity_id"] for row in by_ticker.values()]
    inserted = await conn.fetchrow(_INSERT_SQL, user_id, ids)
    assert inserted is not None
    added = set(inserted["added"])
    if inserted["before_count"] + len(added) > MAX_WATCHLIST_SIZE:
        raise BadUserInput(f"a watchlist holds at most {MAX_WATCHLIST_SIZE} stocks")
    if not added and not existing_ok:
        raise Conflict(f"{', '.join(sorted(by_ticker))} is already on your watchlist")
    missing_data = [
        row for row in by_ticker.values() if row["entity_id"] in added and not row["has_price_data"]
    ]
    if missing_data:
        tickers = [r["ticker"] for r in missing_data]
        await backfill_queue.enqueue_many(conn, tickers, user_id)
        await backfill_queue.mark_queued(conn, tickers)
    return by_ticker


async def add_stock(pool: asyncpg.Pool, user_id: UUID, raw_ticker: str) -> asyncpg.Record:
    """Watch one ticker (one transaction); returns the new watchlist item row."""
    ticker = normalize_ticker(raw_ticker)
    async with pool.acquire() as conn, conn.transaction():
        by_ticker = await add_many(conn, user_id, [ticker], existing_ok=False)
        return await get_item(conn, user_id, by_ticker[ticker]["entity_id"])


async def remove_stock(db: Executor, user_id: UUID, raw_ticker: str) -> bool:
    """Delete the watchlist row only (settings stay); False when it was not there."""
    ticker = normalize_ticker(raw_ticker)
    return await db.fetchval(_REMOVE_SQL, user_id, ticker) is not None


async def set_stock_alerts(
    pool: asyncpg.Pool, user_id: UUID, raw_ticker: str, enabled: bool
) -> asyncpg.Record:
    """Switch alerts for one watched stock; NotFound when it is not on the watchlist."""
    ticker = normalize_ticker(raw_ticker)
    async with pool.acquire() as conn, conn.transaction():
        entity_id = await conn.fetchval(_SET_ALERTS_SQL, user_id, ticker, enabled)
        if entity_id is None:
            raise NotFound(f"{ticker} is not on your watchlist")
        return await get_item(conn, user_id, entity_id)
