"""`update-prices`: fetch only the bars after each entity's last date and merge them in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date, timedelta

import asyncpg

from ingest.backfill import backfill_start, describe, today_utc
from ingest.dolthub import DoltHubClient
from ingest.object_store import ObjectStore
from ingest.parquet_layout import write_prices
from ingest.progress import Progress
from ingest.source import fetch_price_bars
from services.entity_data import PricedEntity, extend_prices, priced_entities
from services.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4


async def update_one(
    settings: Settings,
    pool: asyncpg.Pool,
    client: DoltHubClient,
    store: ObjectStore,
    entity: PricedEntity,
    today: date,
    progress: Progress,
) -> None:
    """Bars in (max date, today]; objects merged first, then the entity's max date."""
    last = entity.price_data_max_date
    start = last + timedelta(days=1) if last else backfill_start(today, settings.backfill_years)
    if start > today:
        progress.item_done("up to date")
        return
    fetched = await fetch_price_bars(
        client, settings.dolthub_stocks_db, entity.ticker, start, today
    )
    progress.add("rows rejected", fetched.rejected.rejected)
    if fetched.rejected.rejected:
        log.warning("%s: %s", entity.ticker, fetched.rejected.describe())
    if not fetched.rows:
        progress.item_done("up to date")
        return
    await write_prices(store, entity.ticker, fetched.rows)
    async with pool.acquire() as conn:
        await extend_prices(conn, entity.ticker, fetched.rows[0].date, fetched.rows[-1].date)
    progress.add("bars written", len(fetched.rows))
    progress.item_done("updated")


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

    async def guarded(entity: PricedEntity) -> None:
        async with gate:
            try:
                await update_one(settings, pool, client, store, entity, today, progress)
            except Exception as exc:
                progress.item_failed(entity.ticker, describe(exc))

    await asyncio.gather(*(guarded(e) for e in entities))
    return progress
