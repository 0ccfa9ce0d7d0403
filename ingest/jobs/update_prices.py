"""`update-prices`: new bars (with splits and dividends) and new quarters for every priced entity.

The new days of most tickers come in bulk: keyset pages of every symbol's rows by date (see
`plan_bulk` for who joins), so a day of the whole market costs tens of requests. Tickers left
out (a gap, a short `--tickers` list) are fetched one by one, from their own last date.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg

from ingest.dolthub.bulk import (
    PAGE_ROWS,
    fetch_bars_by_date,
    fetch_dividends_by_date,
    fetch_splits_by_date,
    symbols_with_quarters,
)
from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.earnings import fetch_fundamentals
from ingest.dolthub.paging import FetchResult, WindowQuery, fetch_window
from ingest.dolthub.sql import equals, sql_string
from ingest.dolthub.stocks import fetch_dividends, fetch_price_bars, fetch_splits
from ingest.jobs.backfill import backfill_start, describe, today_utc
from ingest.progress import Progress
from services.data_coverage import (
    PricedEntity,
    extend_fundamentals,
    extend_prices,
    priced_entities,
)
from services.logs import log_context
from services.market.records import Dividend, PriceBar, Split
from services.market.series import years_before
from services.market_data_writes import TickerData, write_objects
from services.settings import Settings
from services.storage.market_files import tickers_with_dividends
from services.storage.object_store import ObjectStore
from services.symbols import universe_size

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
# Quarters are filed 30-45 days after they end: once the newest stored quarter is this old,
# the next one is due and income_statement is probed (one request) each run until it appears.
FUNDAMENTALS_DUE_DAYS = 100
# A due ticker whose newest quarter is older than this is probed on its own: an active filer's
# newest stored quarter is at most ~140 days old (91 days, ~45 to file), so a bulk scan from
# further back would page through quarters of every symbol for a few stragglers.
QUARTER_PROBE_LOOKBACK_DAYS = 200
# Below this many tickers on the bulk window nothing goes in bulk: a few dozen requests one
# by one are cheap either way, and a short `--tickers` list keeps its per-ticker queries.
BULK_MIN_TICKERS = 20
# The bulk window never starts more than this before the newest last date: further behind is
# a gap, fetched per ticker from its own last date (one request per calendar year).
BULK_MAX_LAG_DAYS = 14
# What a ticker with new bars costs one by one: its ohlcv window, its splits, its dividends.
PER_TICKER_REQUESTS = 3
# Bulk requests beside the ohlcv pages: the query that finds no later date, the splits page
# and the dividends page.
BULK_EXTRA_REQUESTS = 3
# Dividends are asked for from this many days before a ticker's new bars: a row DoltHub adds a
# little after its ex-date is still picked up (a re-fetched row merges onto itself).
DIVIDEND_LOOKBACK_DAYS = 31
# A ticker whose dividends were never fetched (priced before they were stored) gets this many
# years of them: the dividend rule looks back three.
DIVIDEND_CATCH_UP_YEARS = 4


def dividends_since(start: date, today: date, *, fetched_before: bool) -> date:
    """First ex-date to ask for: a little before the new bars, or the catch-up window."""
    if not fetched_before:
        return years_before(today, DIVIDEND_CATCH_UP_YEARS)
    return min(start, today) - timedelta(days=DIVIDEND_LOOKBACK_DAYS)


@dataclass(frozen=True)
class BulkPlan:
    """Fetch every symbol's bars in (after, today] at once, for these tickers."""

    after: date
    tickers: frozenset[str]
    estimated_requests: int


def weekdays_between(after: date, through: date) -> int:
    """Weekdays d with after < d <= through (holidays are not known here; they only overcount)."""
    days = (through - after).days
    if days <= 0:
        return 0
    full_weeks, rest = divmod(days, 7)
    extra = sum(1 for n in range(1, rest + 1) if (after + timedelta(days=n)).weekday() < 5)
    return full_weeks * 5 + extra


def plan_bulk(
    last_dates: Mapping[str, date | None],
    today: date,
    universe: int,
    *,
    page_rows: int = PAGE_ROWS,
    min_tickers: int = BULK_MIN_TICKERS,
) -> BulkPlan | None:
    """Which tickers take the bulk path, and from which date; None: all go one by one.

    The window starts after one of the tickers' last dates, at most BULK_MAX_LAG_DAYS before
    the newest: the one with the fewest estimated requests, counting ceil(weekdays x universe /
    page) ohlcv pages for the window (DoltHub sends every listed symbol's rows, tracked or
    not) and PER_TICKER_REQUESTS for each ticker it leaves behind. A ticker one day behind
    joins only when enough others are (else it is cheaper alone); tickers left behind, and
    every ticker when bulk would not beat one-by-one, are fetched per ticker.
    """
    behind = {t: d for t, d in last_dates.items() if d is not None and d < today}
    if len(behind) < min_tickers:
        return None
    newest = max(behind.values())
    near = sorted({d for d in behind.values() if (newest - d).days <= BULK_MAX_LAG_DAYS})
    rows_per_day = max(universe, len(last_dates))
    best: tuple[int, date, int] | None = None
    for after in near:
        pages = math.ceil(weekdays_between(after, today) * rows_per_day / page_rows)
        bulk = pages + BULK_EXTRA_REQUESTS
        left_behind = sum(
            1 for d in behind.values() if d < after and (newest - d).days <= BULK_MAX_LAG_DAYS
        )
        total = bulk + PER_TICKER_REQUESTS * left_behind
        if best is None or total < best[0]:
            best = (total, after, bulk)
    assert best is not None
    _, after, bulk = best
    members = frozenset(t for t, d in behind.items() if d >= after)
    if len(members) < min_tickers or bulk >= PER_TICKER_REQUESTS * len(members):
        return None
    return BulkPlan(after, members, bulk)


@dataclass
class BulkBars:
    """What the bulk fetch found: bars, splits and dividends of each bulk ticker."""

    bars: dict[str, FetchResult[PriceBar]] = field(default_factory=dict)
    splits: dict[str, FetchResult[Split]] = field(default_factory=dict)
    dividends: dict[str, FetchResult[Dividend]] = field(default_factory=dict)
    requests: int = 0


@dataclass
class QuarterProbe:
    """Which tickers the bulk income-statement probe covered, and which have a new quarter."""

    probed: frozenset[str]
    with_new: set[str]
    requests: int


def quarter_probe_starts(entities: Sequence[PricedEntity], today: date) -> dict[str, date]:
    """Due tickers (newest quarter FUNDAMENTALS_DUE_DAYS old) within the bulk probe's reach."""
    starts: dict[str, date] = {}
    for entity in entities:
        last = entity.fundamental_data_max_date
        if last is None:
            continue
        age = (today - last).days
        if FUNDAMENTALS_DUE_DAYS <= age <= QUARTER_PROBE_LOOKBACK_DAYS:
            starts[entity.ticker] = last + timedelta(days=1)
    return starts


async def probe_quarters(
    client: DoltHubClient,
    earnings_db: str,
    starts: Mapping[str, date],
    today: date,
    page_rows: int = PAGE_ROWS,
) -> QuarterProbe:
    """One keyset scan of income_statement by date instead of one probe per due ticker."""
    after = min(starts.values()) - timedelta(days=1)
    with_new, requests = await symbols_with_quarters(
        client, earnings_db, starts, after, today, page_rows
    )
    return QuarterProbe(frozenset(starts), with_new, requests)


async def fetch_bulk(
    client: DoltHubClient,
    stocks_db: str,
    plan: BulkPlan,
    entities: Sequence[PricedEntity],
    today: date,
    page_rows: int = PAGE_ROWS,
    dividends_fetched: frozenset[str] = frozenset(),
) -> BulkBars:
    """Every bulk ticker's bars from its own next day, then the splits and dividends of those
    with bars (from `dividends_since`: a ticker never fetched before makes it one longer scan)."""
    starts = {
        e.ticker: e.price_data_max_date + timedelta(days=1)
        for e in entities
        if e.ticker in plan.tickers and e.price_data_max_date is not None
    }
    bars, requests = await fetch_bars_by_date(
        client, stocks_db, starts, plan.after, today, page_rows
    )
    found = BulkBars(bars=bars, requests=requests)
    # Like the per-ticker path: splits only for tickers with new bars.
    with_bars = {t: starts[t] for t, fetched in bars.items() if fetched.rows}
    if with_bars:
        after = min(with_bars.values()) - timedelta(days=1)
        found.splits, split_requests = await fetch_splits_by_date(
            client, stocks_db, with_bars, after, today, page_rows
        )
        found.requests += split_requests
    dividend_starts = {
        t: dividends_since(d, today, fetched_before=t in dividends_fetched)
        for t, d in with_bars.items()
    }
    if dividend_starts:
        after = min(dividend_starts.values()) - timedelta(days=1)
        found.dividends, dividend_requests = await fetch_dividends_by_date(
            client, stocks_db, dividend_starts, after, today, page_rows
        )
        found.requests += dividend_requests
    return found


@dataclass(frozen=True)
class PriceUpdate:
    """One `update-prices` run: what every per-entity step reads and writes."""

    settings: Settings
    pool: asyncpg.Pool
    client: DoltHubClient
    store: ObjectStore
    today: date
    progress: Progress
    bulk: BulkBars | None = None
    quarters: QuarterProbe | None = None
    # Tickers with a dividends object; the others' dividends were never fetched.
    dividends_fetched: frozenset[str] = frozenset()

    async def update_one(self, entity: PricedEntity) -> None:
        """New bars (and the splits among them), then any newly published quarters."""
        updated = await self.update_bars(entity)
        updated |= await self.update_quarters(entity)
        self.progress.item_done("updated" if updated else "up to date")

    async def update_bars(self, entity: PricedEntity) -> bool:
        """Bars in (max date, today]; objects merged first, then the entity's max date.

        A ticker whose dividends were never fetched (priced before they were stored) gets
        DIVIDEND_CATCH_UP_YEARS of them now, new bars or not.
        """
        last = entity.price_data_max_date
        start = (
            last + timedelta(days=1)
            if last
            else backfill_start(self.today, self.settings.backfill_years)
        )
        dividends_known = entity.ticker in self.dividends_fetched
        if start > self.today and dividends_known:
            return False
        stocks = self.settings.dolthub_stocks_db
        fetched = self.bulk.bars.get(entity.ticker) if self.bulk else None
        if fetched is None and start <= self.today:
            fetched = await fetch_price_bars(self.client, stocks, entity.ticker, start, self.today)
        fetched = fetched or FetchResult()
        self.progress.add("rows rejected", fetched.rejected.rejected)
        if fetched.rejected.rejected:
            log.warning("%s: %s", entity.ticker, fetched.rejected.describe())
        if not fetched.rows and dividends_known:
            return False
        # A split among the new days is stored with the bars it explains (raw prices jump on
        # the ex-date; evaluation adjusts with the splits object).
        splits: FetchResult[Split] = FetchResult()
        if fetched.rows:
            found_splits = self.bulk.splits.get(entity.ticker) if self.bulk else None
            if found_splits is None:
                found_splits = await fetch_splits(
                    self.client, stocks, entity.ticker, start, self.today
                )
            splits = found_splits
        since = dividends_since(start, self.today, fetched_before=dividends_known)
        dividends = await self.new_dividends(entity.ticker, since)
        data = TickerData(
            entity.ticker, bars=fetched.rows, splits=splits.rows, dividends=dividends.rows
        )
        await write_objects(self.pool, self.store, data)
        if fetched.rows:
            async with self.pool.acquire() as conn:
                await extend_prices(
                    conn, entity.ticker, fetched.rows[0].date, fetched.rows[-1].date
                )
        self.progress.add("bars written", len(fetched.rows))
        self.progress.add("splits written", len(splits.rows))
        self.progress.add("dividends written", len(dividends.rows))
        return bool(fetched.rows or dividends.rows)

    async def new_dividends(self, ticker: str, since: date) -> FetchResult[Dividend]:
        """The bulk fetch's dividends of `ticker`, else its own with ex_date from `since`."""
        found = self.bulk.dividends.get(ticker) if self.bulk else None
        if found is not None:
            return found
        stocks = self.settings.dolthub_stocks_db
        return await fetch_dividends(self.client, stocks, ticker, since, self.today)

    async def update_quarters(self, entity: PricedEntity) -> bool:
        """Once a newer quarter is due, probe income_statement; fetch all five tables if there."""
        last = entity.fundamental_data_max_date
        if last is None or (self.today - last).days < FUNDAMENTALS_DUE_DAYS:
            return False
        start = last + timedelta(days=1)
        earnings = self.settings.dolthub_earnings_db
        if self.quarters is not None and entity.ticker in self.quarters.probed:
            if entity.ticker not in self.quarters.with_new:
                return False
        else:
            where = [
                equals("act_symbol", sql_string(entity.ticker)),
                equals("period", sql_string("Quarter")),
            ]
            probe = WindowQuery(earnings, "income_statement", ("date",), "date", where)
            end = self.today + timedelta(days=1)
            if not (await fetch_window(self.client, probe, start, end)).rows:
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
    bulk_page_rows: int = PAGE_ROWS,
    bulk_min_tickers: int = BULK_MIN_TICKERS,
) -> Progress:
    """Update every entity with price data (or only `tickers`); failures are per ticker."""
    today = today or today_utc()
    async with pool.acquire() as conn:
        entities = await priced_entities(conn, tickers)
        universe = await universe_size(conn)
    if tickers:
        known = {e.ticker for e in entities}
        for ticker in tickers:
            if ticker not in known:
                progress.item_failed(
                    ticker, "no price data yet (queue a backfill first)", outcome="skipped"
                )
    progress.set_total(len(entities) + progress.done)
    plan = plan_bulk(
        {e.ticker: e.price_data_max_date for e in entities},
        today,
        universe,
        page_rows=bulk_page_rows,
        min_tickers=bulk_min_tickers,
    )
    dividends_fetched = frozenset(await tickers_with_dividends(store))
    bulk: BulkBars | None = None
    if plan is not None:
        log.info(
            "bulk: %d tickers' bars after %s (~%d requests); %d one by one",
            len(plan.tickers),
            plan.after,
            plan.estimated_requests,
            len(entities) - len(plan.tickers),
        )
        try:
            bulk = await fetch_bulk(
                client,
                settings.dolthub_stocks_db,
                plan,
                entities,
                today,
                bulk_page_rows,
                dividends_fetched,
            )
        except Exception as exc:
            # One failed fetch stands for every ticker in it; none is retried one by one, which
            # would hammer a DoltHub that is already failing.
            message = describe(exc)
            for entity in entities:
                if entity.ticker in plan.tickers:
                    progress.item_failed(entity.ticker, message)
            entities = [e for e in entities if e.ticker not in plan.tickers]
        else:
            progress.add("bulk requests", bulk.requests)
    quarters: QuarterProbe | None = None
    due = quarter_probe_starts(entities, today)
    if len(due) >= bulk_min_tickers:
        try:
            quarters = await probe_quarters(
                client, settings.dolthub_earnings_db, due, today, bulk_page_rows
            )
        except Exception as exc:
            # Only the probe failed: those tickers probe one by one below, as before.
            log.warning("bulk quarter probe failed (%s); probing one by one", describe(exc))
        else:
            progress.add("bulk requests", quarters.requests)
    gate = asyncio.Semaphore(concurrency)
    run = PriceUpdate(
        settings, pool, client, store, today, progress, bulk, quarters, dividends_fetched
    )

    async def guarded(entity: PricedEntity) -> None:
        async with gate:
            with log_context(ticker=entity.ticker):
                try:
                    await run.update_one(entity)
                except Exception as exc:
                    progress.item_failed(entity.ticker, describe(exc))

    await asyncio.gather(*(guarded(e) for e in entities))
    return progress
