"""The one write path for a ticker's market data: every object first, then entity metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from services.data_coverage import DataWritten, record_written
from services.market.records import PriceBar, QuarterFundamentals, Split
from services.storage.market_files import write_fundamentals, write_prices, write_splits
from services.storage.object_store import ObjectStore
from services.symbols import SymbolInfo


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
