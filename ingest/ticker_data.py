"""The one write path for a ticker's market data: every object first, then entity metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from ingest.market_data import PriceBar, QuarterFundamentals, Split
from ingest.object_store import ObjectStore
from ingest.parquet_layout import write_fundamentals, write_prices, write_splits
from ingest.source import SymbolInfo as SourceSymbol
from services.entity_data import DataWritten, SymbolInfo, record_written


@dataclass
class TickerData:
    """Validated data for one ticker, ready to store."""

    ticker: str
    bars: list[PriceBar] = field(default_factory=list)
    quarters: list[QuarterFundamentals] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    symbol: SymbolInfo | None = None

    @property
    def rows(self) -> int:
        return len(self.bars) + len(self.quarters) + len(self.splits)


def symbol_info(source: SourceSymbol | None) -> SymbolInfo | None:
    """The service-layer view of a DoltHub `symbol` row."""
    if source is None:
        return None
    return SymbolInfo(source.ticker, source.name, source.exchange, source.is_etf)


async def write_objects(store: ObjectStore, data: TickerData) -> DataWritten:
    """Write (merge) every object of `data`; returns what the entity row should now say."""
    await write_prices(store, data.ticker, data.bars)
    await write_fundamentals(store, data.ticker, data.quarters)
    await write_splits(store, data.ticker, data.splits)
    days = [b.date for b in data.bars]
    ends = [q.period_end_date for q in data.quarters]
    return DataWritten(
        ticker=data.ticker,
        price_min=min(days, default=None),
        price_max=max(days, default=None),
        fundamental_min=min(ends, default=None),
        fundamental_max=max(ends, default=None),
        symbol=data.symbol,
    )


async def store_ticker_data(
    store: ObjectStore, conn: asyncpg.Connection, data: TickerData
) -> DataWritten:
    """Objects, then (after all of them exist) the entity row in its own transaction."""
    written = await write_objects(store, data)
    async with conn.transaction():
        await record_written(conn, written)
    return written
