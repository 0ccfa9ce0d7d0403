"""Evaluation storage: runs and claims, the per-entity commit with its alert fan-out, signals.

The pure decisions (which state changes are material) live in services.market; this module
reads their inputs and writes their outcome: per stock one signal row, and per transition
one alert per watcher who should hear of it, chosen set-based in SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.db import Connection, Executor
from services.delivery import outbox
from services.delivery.registry import ALL_CHANNELS, DeliveryChannel
from services.market.transitions import Transition

# Serialises "join or create the open run" across evaluator processes.
RUN_LOCK_KEY = 727_002_001
ALL_SCOPE = "*"
# Woken listeners (the API's alert hub, `deliver --follow`) read what committed since.
ALERT_CHANNEL = "alert_created"


@dataclass(frozen=True)
class EvaluationRun:
    id: UUID
    as_of: date
    entity_count: int
    created: bool


@dataclass(frozen=True)
class ClaimedEntity:
    id: UUID
    ticker: str
    price_data_min_date: date | None
    fundamental_data_min_date: date | None


def scope_of(tickers: Sequence[str] | None) -> str:
    """'*' for a full run, else the sorted, de-duplicated ticker list."""
    return ALL_SCOPE if tickers is None else ",".join(sorted(set(tickers)))


_LATEST_PRICE_DATE = """
SELECT max(e.price_data_max_date)
FROM entities e
WHERE e.has_price_data
  AND (CASE WHEN $1::text[] IS NULL
            THEN EXISTS (SELECT 1 FROM watchlists w WHERE w.entity_id = e.id)
            ELSE e.ticker = ANY($1::text[]) END)
"""


async def latest_price_date(pool: asyncpg.Pool, tickers: Sequence[str] | None) -> date | None:
    """The latest price date over the entities a run would evaluate."""
    value: date | None = await pool.fetchval(
        _LATEST_PRICE_DATE, None if tickers is None else list(tickers)
    )
    return value


async def evaluable_tickers(pool: asyncpg.Pool, tickers: Sequence[str]) -> set[str]:
    """Those of `tickers` that exist and have price data."""
    rows = await pool.fetch(
        "SELECT ticker FROM entities WHERE has_price_data AND ticker = ANY($1::text[])",
        list(tickers),
    )
    return {row["ticker"] for row in rows}


async def watched_tickers(db: Executor, tickers: Sequence[str]) -> set[str]:
    """Those of `tickers` that at least one user watches."""
    rows = await db.fetch(
        "SELECT e.ticker FROM entities e WHERE e.ticker = ANY($1::text[]) "
        "AND EXISTS (SELECT 1 FROM watchlists w WHERE w.entity_id = e.id)",
        list(tickers),
    )
    return {row["ticker"] for row in rows}


_OPEN_RUN = """
SELECT id, as_of, entity_count FROM evaluation_runs
WHERE as_of = $1 AND scope = $2 AND finished_at IS NULL
"""
_CREATE_RUN = "INSERT INTO evaluation_runs (as_of, scope) VALUES ($1, $2) RETURNING id"
_SEED_CLAIMS = """
WITH seeded AS (
    INSERT INTO evaluation_claims (run_id, entity_id)
    SELECT $1, e.id FROM entities e
    WHERE e.has_price_data
      AND (e.price_data_min_date IS NULL OR e.price_data_min_date <= $3)
      AND (CASE WHEN $2::text[] IS NULL
                THEN EXISTS (SELECT 1 FROM watchlists w WHERE w.entity_id = e.id)
                ELSE e.ticker = ANY($2::text[]) END)
    RETURNING 1
)
UPDATE evaluation_runs SET entity_count = (SELECT count(*) FROM seeded) WHERE id = $1
RETURNING entity_count
"""


async def join_or_create_run(
    pool: asyncpg.Pool, as_of: date, tickers: Sequence[str] | None
) -> EvaluationRun:
    """Join the open run for (as_of, scope), or open one and seed a claim per entity.

    Entities whose prices start after as_of have nothing to evaluate and are left out.
    """
    scope = scope_of(tickers)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK_KEY)
        row = await conn.fetchrow(_OPEN_RUN, as_of, scope)
        if row is not None:
            return EvaluationRun(row["id"], row["as_of"], row["entity_count"], created=False)
        run_id = await conn.fetchval(_CREATE_RUN, as_of, scope)
        count = await conn.fetchval(
            _SEED_CLAIMS, run_id, None if tickers is None else list(tickers), as_of
        )
        return EvaluationRun(run_id, as_of, count, created=True)


# A processing claim is taken over when its lease expired, or at once when it predates the
# database server's start: a restart cut every session, so its evaluator's work was lost (if
# that evaluator lives on, its commit finds the claim gone and writes nothing).
_CLAIM_BATCH = """
WITH picked AS (
    SELECT entity_id FROM evaluation_claims
    WHERE run_id = $1
      AND (status = 'pending'
           OR (status = 'processing'
               AND (claimed_at < now() - make_interval(secs => $4)
                    OR claimed_at < pg_postmaster_start_time())))
    ORDER BY entity_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE evaluation_claims c
    SET status = 'processing', claimed_by = $2, claimed_at = now()
    FROM picked
    WHERE c.run_id = $1 AND c.entity_id = picked.entity_id
    RETURNING c.entity_id
)
SELECT e.id, e.ticker, e.price_data_min_date, e.fundamental_data_min_date
FROM claimed JOIN entities e ON e.id = claimed.entity_id
ORDER BY e.ticker
"""


async def claim_batch(
    pool: asyncpg.Pool, run_id: UUID, worker: str, size: int, lease_seconds: float
) -> list[ClaimedEntity]:
    """Claim up to `size` pending (or lease-expired) entities of the run for `worker`."""
    rows = await pool.fetch(_CLAIM_BATCH, run_id, worker, size, float(lease_seconds))
    return [
        ClaimedEntity(
            r["id"], r["ticker"], r["price_data_min_date"], r["fundamental_data_min_date"]
        )
        for r in rows
    ]


async def fail_claim(
    pool: asyncpg.Pool, run_id: UUID, entity_id: UUID, worker: str, error: str
) -> None:
    """Mark one claim failed with its error (the run goes on)."""
    await pool.execute(
        """
        UPDATE evaluation_claims
        SET status = 'failed', finished_at = now(), error_message = left($4, 2000)
        WHERE run_id = $1 AND entity_id = $2 AND claimed_by = $3
        """,
        run_id,
        entity_id,
        worker,
        error,
    )


_RELEASE_CLAIMS = """
UPDATE evaluation_claims SET status = 'pending', claimed_by = NULL, claimed_at = NULL
WHERE run_id = $1 AND claimed_by = $2 AND status = 'processing'
"""


async def release_claims(pool: asyncpg.Pool, run_id: UUID, worker: str) -> int:
    """Hand `worker`'s unfinished claims back to the run at once; returns how many."""
    status = await pool.execute(_RELEASE_CLAIMS, run_id, worker)
    return int(status.rsplit(" ", 1)[-1])


async def finish_run_if_complete(pool: asyncpg.Pool, run_id: UUID) -> bool:
    """Close the run once no claim is pending or processing; True when this call closed it."""
    status = await pool.execute(
        """
        UPDATE evaluation_runs SET finished_at = now()
        WHERE id = $1 AND finished_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM evaluation_claims
                          WHERE run_id = $1 AND status IN ('pending', 'processing'))
        """,
        run_id,
    )
    return bool(status.endswith(" 1"))


_PREVIOUS_SIGNALS = """
SELECT DISTINCT ON (entity_id)
       entity_id, as_of, close, sma200, trend_position, valuation_metric, valuation_multiple,
       valuation_percentile, valuation_regime, eps_ttm, fundamental_direction, computed_at
FROM entity_signals
WHERE entity_id = ANY($1::uuid[]) AND as_of < $2
ORDER BY entity_id, as_of DESC
"""


async def previous_signals(
    pool: asyncpg.Pool, entity_ids: Sequence[UUID], as_of: date
) -> dict[UUID, asyncpg.Record]:
    """The last stored signal before `as_of` of each entity (absent when none)."""
    rows = await pool.fetch(_PREVIOUS_SIGNALS, list(entity_ids), as_of)
    return {row["entity_id"]: row for row in rows}


_LATER_SIGNALS = """
SELECT DISTINCT entity_id FROM entity_signals
WHERE entity_id = ANY($1::uuid[]) AND as_of > $2
"""


async def evaluated_later(pool: asyncpg.Pool, entity_ids: Sequence[UUID], as_of: date) -> set[UUID]:
    """Those entities that already have a signal for a date after `as_of` (a back-dated run)."""
    return {row["entity_id"] for row in await pool.fetch(_LATER_SIGNALS, list(entity_ids), as_of)}


@dataclass(frozen=True)
class SignalRow:
    entity_id: UUID
    as_of: date
    close: float | None
    sma200: float | None
    trend_position: str
    valuation_metric: str | None
    valuation_multiple: float | None
    valuation_percentile: float | None
    valuation_regime: str
    eps_ttm: float | None
    fundamental_direction: str
    details: dict[str, Any]


@dataclass(frozen=True)
class FanOut:
    """Who hears of a stock's transitions, and how the alerts are written.

    `seen_since`: only watchers who added the stock before this moment (when the previous
    signal was computed) had seen the previous state; for the others this evaluation is their
    first, and silent. `chunk_size` watchers go in one transaction, which holds the alert
    commit-order lock only for that long.
    """

    transitions: Sequence[Transition]
    seen_since: datetime
    chunk_size: int
    # The delivery channels with a sender: no outbox row is queued for another.
    channels: Collection[DeliveryChannel] = ALL_CHANNELS


# Claim and signal in one statement (one round trip, atomic on its own): the signal is
# written only while the claim is still this worker's, and the result says whether it was.
_COMMIT_SIGNAL = """
WITH claim AS (
    UPDATE evaluation_claims SET status = 'done', finished_at = now(), error_message = NULL
    WHERE run_id = $1 AND entity_id = $2 AND claimed_by = $3 AND status = 'processing'
    RETURNING 1
), signal AS (
    INSERT INTO entity_signals (entity_id, as_of, close, sma200, trend_position,
        valuation_metric, valuation_multiple, valuation_percentile, valuation_regime, eps_ttm,
        fundamental_direction, details, computed_at)
    SELECT $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb, now()
    WHERE EXISTS (SELECT FROM claim)
    ON CONFLICT (entity_id, as_of) DO UPDATE SET
        close = EXCLUDED.close, sma200 = EXCLUDED.sma200,
        trend_position = EXCLUDED.trend_position,
        valuation_metric = EXCLUDED.valuation_metric,
        valuation_multiple = EXCLUDED.valuation_multiple,
        valuation_percentile = EXCLUDED.valuation_percentile,
        valuation_regime = EXCLUDED.valuation_regime, eps_ttm = EXCLUDED.eps_ttm,
        fundamental_direction = EXCLUDED.fundamental_direction, details = EXCLUDED.details,
        computed_at = EXCLUDED.computed_at
)
SELECT EXISTS (SELECT FROM claim)
"""

_RENEW_CLAIM = """
UPDATE evaluation_claims SET claimed_at = now()
WHERE run_id = $1 AND entity_id = $2 AND claimed_by = $3 AND status = 'processing'
RETURNING 1
"""

# One chunk of watchers in user order (watchlists_entity_user), and their alerts: a watcher
# gets an alert of a type when both switches are on, the type is one of theirs, and they had
# seen the previous state. Rows are numbered (commit_seq) in user, then transition order.
# Re-running a date inserts nothing new (the unique key), so nothing is queued twice.
_INSERT_ALERT_CHUNK = """
WITH chunk AS (
    SELECT w.user_id, w.alerts_enabled FROM watchlists w
    WHERE w.entity_id = $1 AND w.user_id > $3 AND w.added_at < $4
    ORDER BY w.user_id
    LIMIT $5
), inserted AS (
    INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, previous_state,
        new_state, headline, what_changed, why_it_matters, before_vs_now, what_didnt_change,
        data_snapshot)
    SELECT c.user_id, $1, t.alert_type, $2, t.previous_state, t.new_state, t.headline,
           t.what_changed, t.why_it_matters, t.before_vs_now, t.what_didnt_change,
           t.snapshot::jsonb
    FROM chunk c
    JOIN users u ON u.id = c.user_id
    CROSS JOIN unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                      $11::text[], $12::text[], $13::text[], $14::text[])
         WITH ORDINALITY AS t(alert_type, previous_state, new_state, headline, what_changed,
                              why_it_matters, before_vs_now, what_didnt_change, snapshot, ord)
    WHERE c.alerts_enabled AND u.alerts_enabled AND t.alert_type = ANY(u.alert_types)
    ORDER BY c.user_id, t.ord
    ON CONFLICT (user_id, entity_id, alert_type, as_of) DO NOTHING
    RETURNING id
)
SELECT (SELECT user_id FROM chunk ORDER BY user_id DESC LIMIT 1) AS last_user,
       (SELECT count(*) FROM chunk) AS scanned,
       ARRAY(SELECT id FROM inserted) AS ids
"""

# Sorts before every user id: the first chunk starts here.
_FIRST_USER = UUID(int=0)


async def commit_entity(
    pool: asyncpg.Pool,
    *,
    run_id: UUID,
    worker: str,
    signal: SignalRow,
    fan_out: FanOut | None = None,
) -> int | None:
    """Finish the claim and store the signal; write the transitions' alerts to their watchers.

    Without transitions: one statement. With them: the watchers in chunks, each chunk's
    alerts, their deliveries and one notification in a transaction of their own (which also
    renews the claim); the last chunk commits the signal and finishes the claim. A crash
    midway leaves the claim open, and whoever redoes the entity inserts only what is missing.
    Returns how many alerts were written, or None when the claim was lost (lease expired and
    another evaluator took it); a lost claim writes nothing more.
    """
    async with pool.acquire() as conn:
        if fan_out is None or not fan_out.transitions:
            return 0 if await _commit_signal(conn, run_id, worker, signal) else None
        columns = _columns(fan_out.transitions)
        after, written = _FIRST_USER, 0
        try:
            while True:
                async with conn.transaction():
                    if not await conn.fetchval(_RENEW_CLAIM, run_id, signal.entity_id, worker):
                        raise _ClaimLost
                    chunk = await conn.fetchrow(
                        _INSERT_ALERT_CHUNK,
                        signal.entity_id,
                        signal.as_of,
                        after,
                        fan_out.seen_since,
                        fan_out.chunk_size,
                        *columns,
                    )
                    assert chunk is not None  # an aggregate row, always one
                    ids: list[UUID] = list(chunk["ids"])
                    if ids:
                        # The outbox rows commit with their alerts: never one without the other.
                        await outbox.enqueue_for_alerts(conn, ids, channels=fan_out.channels)
                        # One wake-up per chunk: listeners read everything committed since.
                        await conn.execute("SELECT pg_notify($1, $2)", ALERT_CHANNEL, str(ids[-1]))
                    written += len(ids)
                    last = chunk["scanned"] < fan_out.chunk_size
                    if last and not await _commit_signal(conn, run_id, worker, signal):
                        raise _ClaimLost
                if last:
                    return written
                after = chunk["last_user"]
        except _ClaimLost:
            return None


async def renew_claims(pool: asyncpg.Pool, run_id: UUID, worker: str) -> int:
    """Extend the lease of every claim `worker` still processes in the run; how many."""
    status = await pool.execute(
        "UPDATE evaluation_claims SET claimed_at = now() "
        "WHERE run_id = $1 AND claimed_by = $2 AND status = 'processing'",
        run_id,
        worker,
    )
    return int(status.rsplit(" ", 1)[-1])


async def _commit_signal(conn: Connection, run_id: UUID, worker: str, signal: SignalRow) -> bool:
    """Finish the claim and upsert the signal; False (nothing written) if the claim is lost."""
    done: bool = await conn.fetchval(
        _COMMIT_SIGNAL,
        run_id,
        signal.entity_id,
        worker,
        signal.as_of,
        signal.close,
        signal.sma200,
        signal.trend_position,
        signal.valuation_metric,
        signal.valuation_multiple,
        signal.valuation_percentile,
        signal.valuation_regime,
        signal.eps_ttm,
        signal.fundamental_direction,
        _json(signal.details),
    )
    return done


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class _ClaimLost(Exception):
    pass


def _columns(found: Sequence[Transition]) -> list[list[Any]]:
    return [
        [t.alert_type for t in found],
        [t.previous_state for t in found],
        [t.new_state for t in found],
        [t.headline for t in found],
        [t.what_changed for t in found],
        [t.why_it_matters for t in found],
        [t.before_vs_now for t in found],
        [t.what_didnt_change for t in found],
        [_json(t.snapshot) for t in found],
    ]


# One probe of the (entity_id, as_of) primary key per entity instead of scanning history.
_LATEST_SQL = """
SELECT s.entity_id, s.as_of, s.close, s.sma200, s.trend_position, s.valuation_metric,
       s.valuation_multiple, s.valuation_percentile, s.valuation_regime, s.eps_ttm,
       s.fundamental_direction, s.computed_at
FROM unnest($1::uuid[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT * FROM entity_signals x WHERE x.entity_id = k.id ORDER BY x.as_of DESC LIMIT 1
) s
"""

_LAST_AS_OF_SQL = "SELECT max(as_of) FROM entity_signals"


async def latest(db: Executor, entity_ids: Sequence[UUID]) -> dict[UUID, asyncpg.Record]:
    """The newest signal row of each entity that has been evaluated."""
    rows = await db.fetch(_LATEST_SQL, list(entity_ids))
    return {row["entity_id"]: row for row in rows}


async def last_evaluation_as_of(db: Executor) -> dt.date | None:
    """The most recent as-of date any entity was evaluated for."""
    value: dt.date | None = await db.fetchval(_LAST_AS_OF_SQL)
    return value
