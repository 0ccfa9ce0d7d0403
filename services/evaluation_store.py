"""SQL of the evaluation job: runs and claims, previous signals, watchers; commit re-exported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from uuid import UUID

import asyncpg

# Re-exported: the evaluation job and transitions import the commit types from here.
from services.evaluation_commit import AlertRow as AlertRow
from services.evaluation_commit import SignalRow as SignalRow
from services.evaluation_commit import StateRow as StateRow
from services.evaluation_commit import commit_entity as commit_entity

# Serialises "join or create the open run" across evaluator processes.
RUN_LOCK_KEY = 727_002_001
ALL_SCOPE = "*"


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


@dataclass(frozen=True)
class Watcher:
    """One user watching an entity, with the flags that gate alerts and the stored states."""

    user_id: UUID
    user_alerts_enabled: bool
    watchlist_alerts_enabled: bool
    alert_types: tuple[str, ...]
    states: dict[str, str | None]
    last_evaluated_as_of: date | None
    # Removed and added again since its states were last set: what changed while the stock
    # was off the watchlist is old news, so the first evaluation after re-adding is silent.
    rewatched: bool = False


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


_CLAIM_BATCH = """
WITH picked AS (
    SELECT entity_id FROM evaluation_claims
    WHERE run_id = $1
      AND (status = 'pending'
           OR (status = 'processing' AND claimed_at < now() - make_interval(secs => $4)))
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
       valuation_percentile, valuation_regime, eps_ttm, fundamental_direction
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


_WATCHERS = """
SELECT w.entity_id, w.user_id, w.alerts_enabled AS watchlist_alerts_enabled,
       u.alerts_enabled AS user_alerts_enabled, u.alert_types,
       s.last_valuation_regime, s.last_trend_position, s.last_fundamental_direction,
       s.last_evaluated_as_of,
       coalesce(w.added_at > s.last_evaluated_at, false) AS rewatched
FROM watchlists w
JOIN users u ON u.id = w.user_id
LEFT JOIN user_entity_settings s ON s.user_id = w.user_id AND s.entity_id = w.entity_id
WHERE w.entity_id = ANY($1::uuid[])
ORDER BY w.entity_id, w.user_id
"""


async def watchers(pool: asyncpg.Pool, entity_ids: Sequence[UUID]) -> dict[UUID, list[Watcher]]:
    """Every watcher of each entity with its alert flags and stored states."""
    out: dict[UUID, list[Watcher]] = {entity_id: [] for entity_id in entity_ids}
    for row in await pool.fetch(_WATCHERS, list(entity_ids)):
        out[row["entity_id"]].append(
            Watcher(
                user_id=row["user_id"],
                user_alerts_enabled=row["user_alerts_enabled"],
                watchlist_alerts_enabled=row["watchlist_alerts_enabled"],
                alert_types=tuple(row["alert_types"] or ()),
                states={
                    "valuation_regime": row["last_valuation_regime"],
                    "trend_position": row["last_trend_position"],
                    "fundamental_direction": row["last_fundamental_direction"],
                },
                last_evaluated_as_of=row["last_evaluated_as_of"],
                rewatched=row["rewatched"],
            )
        )
    return out
