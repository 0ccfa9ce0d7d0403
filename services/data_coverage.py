"""Data coverage: which market data each entity has in object storage, recorded after writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.db import Connection
from services.symbols import SymbolInfo


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
