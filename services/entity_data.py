"""Entity metadata written by ingest: data availability after writes, and the symbol universe."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
SYMBOL_BATCH = 5000


@dataclass(frozen=True)
class SymbolInfo:
    """What DoltHub's `symbol` table says about a ticker."""

    ticker: str
    name: str | None = None
    exchange: str | None = None
    is_etf: bool = False


@dataclass(frozen=True)
class DataWritten:
    """What one write pass put into object storage for a ticker (None = nothing of that kind)."""

    ticker: str
    price_min: date | None = None
    price_max: date | None = None
    fundamental_min: date | None = None
    fundamental_max: date | None = None
    symbol: SymbolInfo | None = None


@dataclass(frozen=True)
class PricedEntity:
    """An entity with price data and the last dates it has."""

    ticker: str
    price_data_max_date: date | None
    fundamental_data_max_date: date | None = None


# Dates only widen: objects already written stay, so the range is the union of old and new.
RECORD_WRITTEN_SQL = """
INSERT INTO entities AS e (
    ticker, name, exchange, is_etf, has_price_data, has_fundamental_data,
    price_data_min_date, price_data_max_date, fundamental_data_min_date,
    fundamental_data_max_date, data_status, last_data_update
)
VALUES ($1, $2, $3, coalesce($4, false), $5::date IS NOT NULL, $7::date IS NOT NULL,
        $5, $6, $7, $8, CASE WHEN $5::date IS NOT NULL THEN 'ready' ELSE 'none' END, now())
ON CONFLICT (ticker) DO UPDATE SET
    name = coalesce(EXCLUDED.name, e.name),
    exchange = coalesce(EXCLUDED.exchange, e.exchange),
    is_etf = coalesce($4, e.is_etf),
    has_price_data = e.has_price_data OR EXCLUDED.has_price_data,
    has_fundamental_data = e.has_fundamental_data OR EXCLUDED.has_fundamental_data,
    price_data_min_date = CASE WHEN e.has_price_data
        THEN least(e.price_data_min_date, EXCLUDED.price_data_min_date)
        ELSE EXCLUDED.price_data_min_date END,
    price_data_max_date = CASE WHEN e.has_price_data
        THEN greatest(e.price_data_max_date, EXCLUDED.price_data_max_date)
        ELSE EXCLUDED.price_data_max_date END,
    fundamental_data_min_date = CASE WHEN e.has_fundamental_data
        THEN least(e.fundamental_data_min_date, EXCLUDED.fundamental_data_min_date)
        ELSE EXCLUDED.fundamental_data_min_date END,
    fundamental_data_max_date = CASE WHEN e.has_fundamental_data
        THEN greatest(e.fundamental_data_max_date, EXCLUDED.fundamental_data_max_date)
        ELSE EXCLUDED.fundamental_data_max_date END,
    data_status = CASE WHEN e.has_price_data OR EXCLUDED.has_price_data THEN 'ready'
        ELSE e.data_status END,
    last_data_update = now(),
    updated_at = now()
"""

MARK_UNAVAILABLE_SQL = """
INSERT INTO entities AS e (ticker, data_status) VALUES ($1, 'unavailable')
ON CONFLICT (ticker) DO UPDATE SET
    data_status = CASE WHEN e.has_price_data THEN e.data_status ELSE 'unavailable' END,
    updated_at = now()
"""

UPSERT_SYMBOLS_SQL = """
INSERT INTO entities AS e (ticker, name, exchange, is_etf, in_symbol_universe)
SELECT t, n, x, f, true
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) AS s(t, n, x, f)
ON CONFLICT (ticker) DO UPDATE SET
    name = coalesce(EXCLUDED.name, e.name),
    exchange = coalesce(EXCLUDED.exchange, e.exchange),
    is_etf = EXCLUDED.is_etf,
    in_symbol_universe = true,
    updated_at = now()
WHERE (e.name, e.exchange, e.is_etf, e.in_symbol_universe)
    IS DISTINCT FROM (coalesce(EXCLUDED.name, e.name), coalesce(EXCLUDED.exchange, e.exchange),
                      EXCLUDED.is_etf, true)
"""

RETIRE_SYMBOLS_SQL = """
UPDATE entities SET in_symbol_universe = false, updated_at = now()
WHERE in_symbol_universe AND NOT (ticker = ANY($1::text[]))
"""

PRICED_ENTITIES_SQL = """
SELECT ticker, price_data_max_date, fundamental_data_max_date FROM entities
WHERE has_price_data AND ($1::text[] IS NULL OR ticker = ANY($1::text[]))
ORDER BY ticker
"""

EXTEND_PRICES_SQL = """
UPDATE entities
SET price_data_max_date = greatest(price_data_max_date, $2),
    price_data_min_date = least(price_data_min_date, $3),
    last_data_update = now(), updated_at = now()
WHERE ticker = $1 AND has_price_data
"""

EXTEND_FUNDAMENTALS_SQL = """
UPDATE entities
SET has_fundamental_data = true,
    fundamental_data_max_date = greatest(fundamental_data_max_date, $2),
    fundamental_data_min_date = least(fundamental_data_min_date, $3),
    last_data_update = now(), updated_at = now()
WHERE ticker = $1
"""


async def extend_fundamentals(conn: Connection, ticker: str, first: date, last: date) -> None:
    """Widen an entity's fundamentals range after new quarters were written."""
    await conn.execute(EXTEND_FUNDAMENTALS_SQL, ticker, last, first)


async def record_written(conn: Connection, written: DataWritten) -> None:
    """After every object is written: flip has_* flags, widen date ranges, copy symbol facts."""
    symbol = written.symbol
    await conn.execute(
        RECORD_WRITTEN_SQL,
        written.ticker,
        symbol.name if symbol else None,
        symbol.exchange if symbol else None,
        symbol.is_etf if symbol else None,
        written.price_min,
        written.price_max,
        written.fundamental_min,
        written.fundamental_max,
    )


async def mark_unavailable(conn: Connection, ticker: str) -> None:
    """The source has no data for the ticker (an entity that already has data keeps its status)."""
    await conn.execute(MARK_UNAVAILABLE_SQL, ticker)


async def upsert_symbols(conn: Connection, symbols: Sequence[SymbolInfo]) -> int:
    """Insert or refresh symbols in the search universe in batches; returns rows changed."""
    changed = 0
    for start in range(0, len(symbols), SYMBOL_BATCH):
        batch = symbols[start : start + SYMBOL_BATCH]
        result = await conn.execute(
            UPSERT_SYMBOLS_SQL,
            [s.ticker for s in batch],
            [s.name for s in batch],
            [s.exchange for s in batch],
            [s.is_etf for s in batch],
        )
        changed += int(result.rsplit(" ", 1)[-1])
    return changed


async def retire_missing_symbols(conn: Connection, seen: Iterable[str]) -> int:
    """Tickers no longer in the source's symbol table leave the universe; returns how many."""
    result = await conn.execute(RETIRE_SYMBOLS_SQL, sorted(set(seen)))
    return int(result.rsplit(" ", 1)[-1])


async def priced_entities(
    conn: Connection, tickers: Sequence[str] | None = None
) -> list[PricedEntity]:
    """Entities that have price data (optionally only these tickers), by ticker."""
    rows = await conn.fetch(PRICED_ENTITIES_SQL, list(tickers) if tickers is not None else None)
    return [
        PricedEntity(r["ticker"], r["price_data_max_date"], r["fundamental_data_max_date"])
        for r in rows
    ]


async def extend_prices(conn: Connection, ticker: str, first: date, last: date) -> bool:
    """Widen an entity's price range after new bars were written; False if it has no data."""
    result = await conn.execute(EXTEND_PRICES_SQL, ticker, last, first)
    return result.endswith(" 1")
