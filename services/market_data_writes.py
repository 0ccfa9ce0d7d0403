"""The one write path for a ticker's market data: every object first, then entity metadata.

Each ticker's read-merge-write of its partitions and the rewrite of its derived history object
run under the ticker's advisory write lock, so two jobs writing the same ticker (update-prices
during a backfill, two imports) take turns instead of losing each other's rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from services.data_coverage import DataWritten
from services.market.records import Dividend, PriceBar, QuarterFundamentals, Split
from services.storage.history import build_history, read_history, refreshed, write_history
from services.storage.market_files import (
    Written,
    write_dividends,
    write_fundamentals,
    write_prices,
    write_splits,
)
from services.storage.object_store import ObjectStore
from services.symbols import SymbolInfo
from services.tickers import normalize_ticker

log = logging.getLogger(__name__)


# Key space (docs/architecture.md): the first 8 bytes of SHA-256 over this prefix + TICKER as a
# signed big-endian bigint; the other advisory locks use small fixed keys or hashtextextended().
_KEY_PREFIX = b"material-changes/ticker-write/"


def ticker_lock_key(ticker: str) -> int:
    """The stable 64-bit advisory-lock key of `ticker`'s writers."""
    digest = hashlib.sha256(_KEY_PREFIX + normalize_ticker(ticker).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def ticker_write_lock(pool: asyncpg.Pool, ticker: str) -> AsyncIterator[None]:
    """Hold `ticker`'s write lock (waiting for it) on a pool connection for the block.

    Session-level rather than transaction-level: the block writes objects, not rows, so no
    transaction has to stay open; a process that dies loses its connection and the lock.
    """
    key = ticker_lock_key(ticker)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


@dataclass
class TickerData:
    """Validated data for one ticker, ready to store."""

    ticker: str
    bars: list[PriceBar] = field(default_factory=list)
    quarters: list[QuarterFundamentals] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    # None: not fetched this time (the stored ones stay); [] fetched, and there are none.
    dividends: list[Dividend] | None = None
    symbol: SymbolInfo | None = None

    @property
    def rows(self) -> int:
        return len(self.bars) + len(self.quarters) + len(self.splits) + len(self.dividends or ())

    @property
    def has_objects(self) -> bool:
        """Anything to write: rows, or a dividend fetch (even an empty one marks them fetched)."""
        return bool(self.rows) or self.dividends is not None


async def write_objects(
    pool: asyncpg.Pool, store: ObjectStore, data: TickerData, *, history: bool = True
) -> DataWritten:
    """Merge every object of `data` and refresh the history; returns what the entity row says.

    `history=False` leaves the history object deleted, for a caller that writes the ticker many
    times and calls `rebuild_history` once at the end (readers use the partitions meanwhile).
    """
    if data.has_objects:
        async with ticker_write_lock(pool, data.ticker):
            await _write_locked(store, data, history)
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


async def _write_locked(store: ObjectStore, data: TickerData, history: bool) -> None:
    # Read before the partition writers delete it: a current history is patched, not rebuilt.
    old = await read_history(store, data.ticker) if history else None
    written: Written = {}
    # Splits before the bars they explain: a reader of the partitions never sees a raw price
    # jump on an ex-date without its split.
    await write_splits(store, data.ticker, data.splits, written=written)
    await write_prices(store, data.ticker, data.bars, written=written)
    await write_fundamentals(store, data.ticker, data.quarters, written=written)
    if data.dividends is not None:
        await write_dividends(store, data.ticker, data.dividends, written=written)
    if not history:
        return
    await write_history(
        store,
        refreshed(old, written)
        if old is not None
        # What was just written is not fetched back.
        else await build_history(store, data.ticker, known=written),
    )


async def rebuild_history(pool: asyncpg.Pool, store: ObjectStore, ticker: str) -> bool:
    """Write the history object from the partitions unless one exists; True if it was written."""
    async with ticker_write_lock(pool, ticker):
        if (
            await read_history(store, ticker, price_columns=("date",), quarter_columns=())
            is not None
        ):
            return False  # a writer rebuilt it while this caller waited for the lock
        await write_history(store, await build_history(store, ticker))
        return True
