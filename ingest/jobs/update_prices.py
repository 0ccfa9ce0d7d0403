"""`update-prices`: bars after each entity's last date (with their splits), and new quarters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.earnings import fetch_fundamentals
from ingest.dolthub.paging import WindowQuery, fetch_window
from ingest.dolthub.sql import equals, sql_string
from ingest.dolthub.stocks import fetch_price_bars, fetch_splits
from ingest.jobs.backfill import backfill_start, describe, today_utc
from ingest.progress import Progress
from services.data_coverage import (
    PricedEntity,
    extend_fundamentals,
    extend_prices,
    priced_entities,
)
from services.logs import log_context
from services.settings import Settings
from services.storage.object_store import ObjectStore
from services.ticker_writes import TickerData, write_objects

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
# Quarters are filed 30-45 days after they end: once the newest stored quarter is this old,
# the next one is due and income_statement is probed (one request) each run until it appears.
FUNDAMENTALS_DUE_DAYS = 100


@dataclass(frozen=True)
class PriceUpdate:
    """One `update-prices` run: what every per-entity step reads and writes."""

    settings: Settings
    pool: asyncpg.Pool
    client: DoltHubClient
    store: ObjectStore
    today: date
    progress: Progress

    async def update_one(self, entity: PricedEntity) -> None:
        """New bars (and the splits among them), then any newly published quarters."""
        updated = await self.update_bars(entity)
        updated |= await self.update_quarters(entity)
        self.progress.item_done("updated" if updated else "up to date")

    async def update_bars(self, entity: PricedEntity) -> bool:
        """Bars in (max date, today]; objects merged first, then the entity's max date."""
        last = entity.price_data_max_date
        start = (
            last + timedelta(days=1)
            if last
            else backfill_start(self.today, self.settings.backfill_years)
        )
        if start > self.today:
            return False
        stocks = self.settings.dolthub_stocks_db
        fetched = await fetch_price_bars(self.client, stocks, entity.ticker, start, self.today)
        self.progress.add("rows rejected", fetched.rejected.rejected)
        if fetched.rejected.rejected:
            log.warning("%s: %s", entity.ticker, fetched.rejected.describe())
        if not fetched.rows:
            return False
        # A split among the new days is stored with the bars it explains (raw prices jump on
        # the ex-date; evaluation adjusts with the splits object).
        splits = await fetch_splits(self.client, stocks, entity.ticker, start, self.today)
        data = TickerData(entity.ticker, bars=fetched.rows, splits=splits.rows)
        await write_objects(self.pool, self.store, data)
        async with self.pool.acquire() as conn:
            await extend_prices(conn, entity.ticker, fetched.rows[0].date, fetched.rows[-1].date)
        self.progress.add("bars written", len(fetched.rows))
        self.progress.add("splits written", len(splits.rows))
        return True

    async def update_quarters(self, entity: PricedEntity) -> bool:
        """Once a newer quarter is due, probe income_statement; fetch all five tables if there."""
        last = entity.fundamental_data_max_date
        if last is None or (self.today - last).days < FUNDAMENTALS_DUE_DAYS:
            return False
        start = last + timedelta(days=1)
        earnings = self.settings.dolthub_earnings_db
        where = [
            equals("act_symbol", sql_string(entity.ticker)),
            equals("period", sql_string("Quarter")),
        ]
        probe = WindowQuery(earnings, "income_statement", ("date",), "date", where)
        if not (await fetch_window(self.client, probe, start, self.today + timedelta(days=1))).rows:
            return False
        fetched = await fetch_fundamentals(self.client, earnings, entity.ticker, start, self.today)
        self.progress.add("rows rejected", fetched.rejected.rejected)
        if not fetched.rows:
            return False
        data = TickerData(entity.ticker, quarters=fetched.rows)
        await write_objects(self.pool, self.store, data)
        ends = [q.period_end_date for q in fetched.rows]
        async with self.pool.acquire() as conn:
            await extend_fundamentals(conn, entity.ticker, min(ends), max(ends))
        self.progress.add("quarters written", len(fetched.rows))
        return True


async def run_update_prices(
    settings: Settings,
    pool: asyncpg.Pool,
    client: DoltHubClient,
    store: ObjectStore,
    progress: Progress,
    *,
    tickers: Sequence[str] | None = None,
    today: date | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Progress:
    """Update every entity with price data (or only `tickers`); failures are per ticker."""
    today = today or today_utc()
    async with pool.acquire() as conn:
        entities = await priced_entities(conn, tickers)
    if tickers:
        known = {e.ticker for e in entities}
        for ticker in tickers:
            if ticker not in known:
                progress.item_failed(
                    ticker, "no price data yet (queue a backfill first)", outcome="skipped"
                )
    progress.set_total(len(entities) + progress.done)
    gate = asyncio.Semaphore(concurrency)
    run = PriceUpdate(settings, pool, client, store, today, progress)

    async def guarded(entity: PricedEntity) -> None:
        async with gate:
            with log_context(ticker=entity.ticker):
                try:
                    await run.update_one(entity)
                except Exception as exc:
                    progress.item_failed(entity.ticker, describe(exc))

    await asyncio.gather(*(guarded(e) for e in entities))
    return progress
