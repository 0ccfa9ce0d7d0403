"""The symbol universe: DoltHub's `symbol` table as searchable entities (no market data)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from services.db import Connection, Executor

SYMBOL_BATCH = 5000


@dataclass(frozen=True)
class SymbolInfo:
    """What DoltHub's `symbol` table says about a ticker."""

    ticker: str
    name: str | None = None
    exchange: str | None = None
    is_etf: bool = False
    is_test_issue: bool = False
    market_category: str | None = None
    financial_status: str | None = None
    last_seen: date | None = None


@dataclass
class Upserted:
    """What an upsert did: rows changed, and the tickers new to the search universe."""

    changed: int = 0
    added: list[str] = field(default_factory=list)


# The final SELECT reads the snapshot from before the INSERT, so `added` lists the tickers
# that were not in the universe until this statement.
UPSERT_SYMBOLS_SQL = """
WITH s AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) AS s(t, n, x, f)
), upserted AS (
INSERT INTO entities AS e (ticker, name, exchange, is_etf, in_symbol_universe)
SELECT t, n, x, f, true FROM s
ON CONFLICT (ticker) DO UPDATE SET
    name = coalesce(EXCLUDED.name, e.name),
    exchange = coalesce(EXCLUDED.exchange, e.exchange),
    is_etf = EXCLUDED.is_etf,
    in_symbol_universe = true,
    updated_at = now()
WHERE (e.name, e.exchange, e.is_etf, e.in_symbol_universe)
    IS DISTINCT FROM (coalesce(EXCLUDED.name, e.name), coalesce(EXCLUDED.exchange, e.exchange),
                      EXCLUDED.is_etf, true)
RETURNING 1
)
SELECT (SELECT count(*) FROM upserted) AS changed,
       ARRAY(SELECT s.t FROM s
             WHERE NOT EXISTS (SELECT 1 FROM entities e
                               WHERE e.ticker = s.t AND e.in_symbol_universe)
             ORDER BY s.t) AS added
"""

RETIRE_SYMBOLS_SQL = """
UPDATE entities SET in_symbol_universe = false, updated_at = now()
WHERE in_symbol_universe AND NOT (ticker = ANY($1::text[]))
RETURNING ticker
"""


async def upsert_symbols(conn: Connection, symbols: Sequence[SymbolInfo]) -> Upserted:
    """Insert or refresh symbols in the search universe in batches."""
    outcome = Upserted()
    for start in range(0, len(symbols), SYMBOL_BATCH):
        batch = symbols[start : start + SYMBOL_BATCH]
        row = await conn.fetchrow(
            UPSERT_SYMBOLS_SQL,
            [s.ticker for s in batch],
            [s.name for s in batch],
            [s.exchange for s in batch],
            [s.is_etf for s in batch],
        )
        assert row is not None
        outcome.changed += row["changed"]
        outcome.added += row["added"]
    return outcome


async def retire_missing_symbols(conn: Connection, seen: Iterable[str]) -> list[str]:
    """Tickers no longer in the source's symbol table leave the universe; returns them."""
    rows = await conn.fetch(RETIRE_SYMBOLS_SQL, sorted(set(seen)))
    return sorted(row["ticker"] for row in rows)


@dataclass(frozen=True)
class SyncAge:
    """When the last complete symbol sync finished, and whether another one is due."""

    last_finished_at: datetime | None
    due: bool


_RECORD_SYNC_SQL = "INSERT INTO symbol_syncs (symbols, added, retired) VALUES ($1, $2, $3)"
# Compared on the database clock, like every other age in the queue and the leases.
_SYNC_AGE_SQL = """
SELECT max(finished_at) AS last,
       $1::int = 0 OR coalesce(max(finished_at) < now() - make_interval(days => $1::int), true)
           AS due
FROM symbol_syncs
"""


async def record_sync(conn: Connection, symbols: int, added: int, retired: int) -> None:
    """Note a complete pass over the source's symbol table."""
    await conn.execute(_RECORD_SYNC_SQL, symbols, added, retired)


async def sync_age(db: Executor, max_age_days: int) -> SyncAge:
    """Whether the last complete sync is older than `max_age_days` (0: always due)."""
    row = await db.fetchrow(_SYNC_AGE_SQL, max_age_days)
    assert row is not None
    return SyncAge(row["last"], row["due"])


_UNIVERSE_SIZE_SQL = "SELECT count(*) FROM entities WHERE in_symbol_universe"


async def universe_size(db: Executor) -> int:
    """How many listed symbols the last sync saw (0 before the first sync)."""
    count: int = await db.fetchval(_UNIVERSE_SIZE_SQL)
    return count
