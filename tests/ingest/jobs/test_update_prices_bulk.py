"""update-prices in bulk: a new day of many tickers in a few keyset pages, equal to per-ticker."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingest.dolthub.client import DoltHubClient, DoltHubDeadlineError, DoltHubQueryError
from ingest.dolthub.stocks import parse_price_row
from ingest.jobs.update_prices import (
    DIVIDEND_CATCH_UP_YEARS,
    DIVIDEND_LOOKBACK_DAYS,
    BulkPlan,
    plan_bulk,
    run_update_prices,
)
from ingest.progress import Progress
from services.data_coverage import record_written
from services.market.records import Dividend, PriceBar
from services.market.series import years_before
from services.market_data_writes import TickerData, write_objects
from services.settings import Settings
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_dividends, read_prices
from tests.fakes.dolthub_data import DividendEvent, SplitEvent
from tests.fakes.dolthub_server import CORRUPTION_REASONS, STOCKS_DB, FakeDoltHub
from tests.fixtures.ingest import sql_requests_for

TODAY = date(2026, 11, 28)  # a Saturday; the fake's data ends Friday 2026-11-27
LAST = date(2026, 11, 24)  # the store's last day: 25, 26 and 27 November are new
FIRST = date(2026, 11, 2)  # the store's first day
TICKERS = [f"S{i:04d}" for i in range(300)]
SYNTHETIC = 300  # the fake lists S0000-S0299 plus 8 named stocks and ETFs: 308 rows a day
Update = Callable[..., Awaitable[Progress]]


def bulk_sql(fake: FakeDoltHub, table: str) -> list[str]:
    """Queries over every symbol of `table` (no act_symbol equality)."""
    return [
        r.sql
        for r in fake.requests
        if r.sql and f"FROM `{table}`" in r.sql and "`act_symbol` =" not in r.sql
    ]


async def seed_store(
    fake: FakeDoltHub,
    pool: asyncpg.Pool,
    store: LocalObjectStore,
    last_dates: Mapping[str, date],
    *,
    dividends_fetched: bool = True,
) -> None:
    """Each ticker stored from FIRST through its last date, through the one write path.

    With `dividends_fetched`, as the current ingest leaves it (a dividends object, here empty);
    without, as a ticker priced before dividends were stored.
    """
    rows: dict[str, list[PriceBar]] = {}
    for row in fake.data.ohlcv_from(FIRST.isoformat()):
        rows.setdefault(row["act_symbol"] or "", []).append(parse_price_row(row))
    for ticker, last in last_dates.items():
        bars = [bar for bar in rows[ticker] if bar.date <= last]
        dividends: list[Dividend] | None = [] if dividends_fetched else None
        data = TickerData(ticker, bars=bars, dividends=dividends)
        written = await write_objects(pool, store, data)
        async with pool.acquire() as conn:
            await record_written(conn, written)


@pytest.fixture
def many(fake_dolthub: FakeDoltHub) -> FakeDoltHub:
    fake_dolthub.data.synthetic_symbols = SYNTHETIC
    return fake_dolthub


@pytest.fixture
def update(ingest_settings: Settings, pool: asyncpg.Pool, dolthub_client: DoltHubClient) -> Update:
    async def run(store: LocalObjectStore, **options: Any) -> Progress:
        progress = Progress("update-prices", interactive=False)
        return await run_update_prices(
            ingest_settings, pool, dolthub_client, store, progress, today=TODAY, **options
        )

    return run


async def entity_rows(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        """SELECT ticker, data_status, has_price_data, has_fundamental_data,
                  price_data_min_date, price_data_max_date,
                  fundamental_data_min_date, fundamental_data_max_date
           FROM entities ORDER BY ticker"""
    )
    return [tuple(r) for r in rows]


async def objects(store: LocalObjectStore) -> dict[str, bytes | None]:
    keys = sorted(await store.list(""))
    return await store.get_many(keys)


async def test_a_new_day_of_300_tickers_costs_three_requests_not_nine_hundred(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    yesterday = date(2026, 11, 26)
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, yesterday))
    many.forget_requests()
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    # One day of 308 symbols fits one page (900 rows); a short page ends the dates, and the
    # tickers with bars need one splits page and one dividends page.
    assert len(bulk_sql(many, "ohlcv")) == 1
    assert len(bulk_sql(many, "split")) == 1
    assert len(bulk_sql(many, "dividend")) == 1
    assert len(many.requests) == 3
    assert progress.counts["bulk requests"] == 3 and progress.counts["bars written"] == 300
    assert "`date` > '2026-11-26'" in bulk_sql(many, "ohlcv")[0]
    assert await pool.fetchval(
        "SELECT count(*) FROM entities WHERE price_data_max_date = '2026-11-27'"
    ) == len(TICKERS)


async def test_pages_of_a_long_window_are_counted_as_planned(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    many.forget_requests()
    progress = await update(ingest_store, bulk_page_rows=100)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    # Three days of 308 rows in pages of 100: each day takes 4 pages (100, 100, 100, 8), the
    # first of each opened by a `date >` query; a last `date >` query finds no later day.
    ohlcv = bulk_sql(many, "ohlcv")
    assert len(ohlcv) == 3 * 4 + 1
    assert sum("`date` = '2026-11-25'" in q for q in ohlcv) == 3
    assert len(bulk_sql(many, "split")) == len(bulk_sql(many, "dividend")) == 1
    assert len(many.requests) == len(ohlcv) + 2 < len(TICKERS) / 10
    for ticker in ("S0000", "S0150", "S0299"):
        assert (await read_prices(ingest_store, ticker)).last_date == date(2026, 11, 27)


async def test_bulk_updates_equal_per_ticker_updates_object_for_object(
    many: FakeDoltHub,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    update: Update,
    tmp_path: Path,
) -> None:
    # Two tickers absent from DoltHub on a day, one absent from the whole window; splits and
    # broken rows as they come.
    many.data.absent = {("S0002", "2026-11-26"), ("S0003", "2026-11-25")}
    many.data.absent |= {("S0004", d) for d in ("2026-11-25", "2026-11-26", "2026-11-27")}
    many.switches.corrupt_every = 40
    many.data.extra_splits = {
        "S0005": [SplitEvent(date(2026, 11, 26), 2, 1)],
        "S0006": [SplitEvent(date(2026, 11, 24), 3, 1)],  # before the window: not fetched
    }
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    per_ticker_store = LocalObjectStore(tmp_path / "per-ticker", fsync=False)
    shutil.copytree(ingest_store.root, per_ticker_store.root)
    start = await entity_rows(pool)

    bulk = await update(ingest_store, bulk_page_rows=128)
    assert bulk.counts["bulk requests"] > 0
    bulk_entities = await entity_rows(pool)
    await pool.execute("UPDATE entities SET price_data_max_date = $1", LAST)
    assert await entity_rows(pool) == start

    many.forget_requests()
    one_by_one = await update(per_ticker_store, bulk_min_tickers=len(TICKERS) + 1)
    assert "bulk requests" not in one_by_one.counts
    assert len(many.requests) >= len(TICKERS)
    assert await entity_rows(pool) == bulk_entities
    assert one_by_one.outcomes == bulk.outcomes and bulk.outcomes["up to date"] >= 1
    for name in ("bars written", "splits written", "dividends written", "rows rejected"):
        assert bulk.counts[name] == one_by_one.counts[name], name
    assert bulk.counts["rows rejected"] > 0
    bulk_objects = await objects(ingest_store)
    per_ticker_objects = await objects(per_ticker_store)
    assert sorted(bulk_objects) == sorted(per_ticker_objects)
    assert [key for key in bulk_objects if key.startswith("splits/")] == [
        "splits/v1/S0005/data.parquet"
    ]
    for key, data in bulk_objects.items():
        assert data == per_ticker_objects[key], key
    await per_ticker_store.close()


async def test_tickers_whose_dividends_were_never_fetched_catch_up_in_one_scan(
    many: FakeDoltHub,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    update: Update,
    tmp_path: Path,
) -> None:
    # Priced before dividends were stored: no dividends object, so their state is unknown.
    await seed_store(
        many, pool, ingest_store, dict.fromkeys(TICKERS, LAST), dividends_fetched=False
    )
    per_ticker_store = LocalObjectStore(tmp_path / "per-ticker", fsync=False)
    shutil.copytree(ingest_store.root, per_ticker_store.root)
    assert await read_dividends(ingest_store, "S0001") is None
    many.forget_requests()
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    scans = bulk_sql(many, "dividend")
    since = years_before(TODAY, DIVIDEND_CATCH_UP_YEARS)
    assert f"`ex_date` > '{since - timedelta(days=1)}'" in scans[0]
    # A few pages of every symbol's dividends instead of one request per ticker.
    assert 1 < len(scans) < 20 and len(many.requests) < len(TICKERS) / 10
    payers = 0
    for ticker in TICKERS:
        stored = await read_dividends(ingest_store, ticker)
        source = [
            r["ex_date"]
            for r in many.data.dividend_rows(ticker)
            if (r["ex_date"] or "") >= str(since)
        ]
        assert stored is not None and [d.ex_date.isoformat() for d in stored] == source, ticker
        payers += bool(stored)
    assert 0 < payers < len(TICKERS)

    await pool.execute("UPDATE entities SET price_data_max_date = $1", LAST)
    one_by_one = await update(per_ticker_store, bulk_min_tickers=len(TICKERS) + 1)
    assert one_by_one.counts["dividends written"] == progress.counts["dividends written"]
    dividend_keys = [k for k in await ingest_store.list("dividends/")]
    assert len(dividend_keys) == len(TICKERS)
    for key in dividend_keys:
        assert await ingest_store.get(key) == await per_ticker_store.get(key), key
    await per_ticker_store.close()


async def test_a_ticker_without_new_bars_never_fetched_gets_its_dividends_anyway(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    friday = date(2026, 11, 27)  # TODAY is the Saturday after: no new bars
    await seed_store(many, pool, ingest_store, {"S0001": friday}, dividends_fetched=False)
    progress = await update(ingest_store)
    assert not progress.failures
    assert await read_dividends(ingest_store, "S0001") is not None
    assert len(sql_requests_for(many, "dividend", "S0001")) == 1
    many.forget_requests()
    again = await update(ingest_store)
    assert again.outcomes == {"up to date": 1}
    assert sql_requests_for(many, "dividend", "S0001") == []  # fetched: only with new bars


async def test_a_dividend_row_dolthub_adds_late_is_still_picked_up(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    # Went ex two weeks before the stored last day, but only shows up in DoltHub now.
    late = DividendEvent(LAST - timedelta(days=14), "0.31000")
    many.data.extra_dividends = {"S0010": [late]}
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    stored = await read_dividends(ingest_store, "S0010")
    assert stored is not None and Dividend(late.ex_date, 0.31) in stored
    (scan,) = bulk_sql(many, "dividend")
    assert f"`ex_date` > '{LAST - timedelta(days=DIVIDEND_LOOKBACK_DAYS)}'" in scan


async def test_row_limit_mid_date_pages_on_from_the_last_symbol(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    many.forget_requests()
    many.switches.row_limit = 64  # DoltHub's cap below our page: every full answer is RowLimit
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    assert progress.counts["bars written"] == 3 * 300
    ohlcv = bulk_sql(many, "ohlcv")
    # 308 rows a day in answers of 64: 4 truncated and one short page per day, then the end.
    assert len(ohlcv) == 3 * 5 + 1
    within = [q for q in ohlcv if "`date` = '2026-11-26'" in q]
    assert len(within) == 4 and all("`act_symbol` > '" in q for q in within)
    for ticker in TICKERS[::50]:
        bars = await read_prices(ingest_store, ticker)
        source = [r["date"] for r in many.data.ohlcv(ticker) if (r["date"] or "") >= "2026-11-02"]
        assert [d.isoformat() for d in bars.dates] == source


async def test_deadlines_shrink_the_page_and_rate_limits_are_retried(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    many.forget_requests()
    many.switches.deadline_rows = 300  # pages of 900 and 450 time out; 225 go through
    many.fail_next(2, status=429)
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    assert progress.counts["bars written"] == 3 * 300
    limits = [q.rsplit("LIMIT ", 1)[1] for q in bulk_sql(many, "ohlcv")]
    # Two 429s retried, then two deadlines on the first page, then pages of 225 throughout.
    assert limits[:4] == ["900", "900", "900", "450"] and set(limits[4:]) == {"225"}
    # The splits and dividends pages shrink the same way; only answered pages count.
    bulk = bulk_sql(many, "ohlcv") + bulk_sql(many, "split") + bulk_sql(many, "dividend")
    answered = [q for q in bulk if "LIMIT 225" in q]
    assert progress.counts["bulk requests"] == len(answered)


async def test_a_failed_bulk_fetch_fails_its_tickers_and_writes_nothing(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    before = await objects(ingest_store)
    many.forget_requests()
    many.fail_next(5, status=503)  # the test client retries 4 times
    progress = await update(ingest_store)
    assert progress.outcomes == {"failed": 300}
    assert "S0000: DoltHub post-no-preference/stocks unavailable" in progress.failures[0]
    assert len(many.requests) == 5  # not one more request per ticker
    assert await objects(ingest_store) == before
    assert await pool.fetchval(
        "SELECT count(*) FROM entities WHERE price_data_max_date = $1", LAST
    ) == len(TICKERS)


async def test_a_ticker_with_a_gap_falls_back_to_per_ticker(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    gap = date(2026, 11, 6)  # 18 days behind the others: beyond the bulk window's reach
    lasts = {**dict.fromkeys(TICKERS, LAST), "S0007": gap}
    await seed_store(many, pool, ingest_store, lasts)
    many.forget_requests()
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    assert f"`date` > '{LAST}'" in bulk_sql(many, "ohlcv")[0]
    own = sql_requests_for(many, "ohlcv", "S0007")
    assert len(own) == 1 and f"`date` >= '{gap + timedelta(days=1)}'" in own[0]
    assert sql_requests_for(many, "ohlcv", "S0008") == []
    bars = await read_prices(ingest_store, "S0007")
    source = [r["date"] for r in many.data.ohlcv("S0007") if (r["date"] or "") >= "2026-11-02"]
    assert [d.isoformat() for d in bars.dates] == source
    row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'S0007'")
    assert row is not None and row["price_data_max_date"] == date(2026, 11, 27)


async def test_broken_rows_are_rejected_per_row_with_a_count(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    many.forget_requests()
    many.switches.corrupt_every = 25
    progress = await update(ingest_store, bulk_page_rows=100)
    tracked = set(TICKERS)
    expected = Counter(
        CORRUPTION_REASONS[kind]
        for row in many.data.ohlcv_from((LAST + timedelta(days=1)).isoformat())
        if (ticker := row["act_symbol"] or "") in tracked
        and (kind := many.corruption_of(ticker, row["date"] or ""))
    )
    # Rows of symbols nobody tracks (AAPL, SPY, …) are not read, so not counted either.
    assert expected.total() > 0
    assert progress.counts["rows rejected"] == expected.total()
    assert progress.counts["bars written"] == 3 * 300 - expected.total()
    assert not progress.failures


async def test_due_quarters_are_probed_in_one_scan_not_one_request_each(
    many: FakeDoltHub, pool: asyncpg.Pool, ingest_store: LocalObjectStore, update: Update
) -> None:
    await seed_store(many, pool, ingest_store, dict.fromkeys(TICKERS, LAST))
    due, straggler = TICKERS[:25], "S0299"  # newest quarter June 30 (due); December (too old)
    await pool.execute(
        """UPDATE entities SET has_fundamental_data = true,
               fundamental_data_min_date = '2025-03-31',
               fundamental_data_max_date = CASE WHEN ticker = ANY($1::text[]) THEN '2026-06-30'
                   WHEN ticker = $2 THEN '2025-12-31' ELSE '2026-09-30' END::date""",
        due,
        straggler,
    )
    many.forget_requests()
    progress = await update(ingest_store)
    assert progress.outcomes == {"updated": 300} and not progress.failures
    scans = bulk_sql(many, "income_statement")
    assert len(scans) == 1 and "`date` > '2026-06-30'" in scans[0]
    # Each due ticker's income statement is fetched once (the new quarter), never probed; the
    # straggler is probed on its own and fetched; the others are not asked about at all.
    for ticker in due:
        assert len(sql_requests_for(many, "income_statement", ticker)) == 1, ticker
    assert len(sql_requests_for(many, "income_statement", straggler)) == 2
    assert sql_requests_for(many, "income_statement", "S0100") == []
    assert progress.counts["quarters written"] == len(due) + 3  # 2026: Q1, Q2, Q3
    newest = await pool.fetch(
        "SELECT DISTINCT fundamental_data_max_date AS d FROM entities WHERE has_fundamental_data"
    )
    assert [r["d"] for r in newest] == [date(2026, 9, 30)]


async def test_the_fake_answers_queries_over_every_symbol_like_dolthub(
    many: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    page = await dolthub_client.query(
        STOCKS_DB,
        "SELECT `date`, `act_symbol`, `close` FROM `ohlcv` WHERE `date` > '2026-11-25'"
        " ORDER BY `date`, `act_symbol` LIMIT 5",
    )
    assert [(r["date"], r["act_symbol"]) for r in page.rows] == [
        ("2026-11-26", s) for s in ("AAPL", "BRK.B", "JPM", "KO", "MSFT")
    ]
    assert all(isinstance(r["close"], str) for r in page.rows) and not page.truncated
    with pytest.raises(DoltHubQueryError):  # 400 with status Error
        await dolthub_client.query(
            STOCKS_DB, "SELECT `date` FROM `ohlcv` WHERE `date` > '2026-11-25' ORDER BY `nope`"
        )
    with pytest.raises(DoltHubDeadlineError):  # every symbol's whole history
        await dolthub_client.query(STOCKS_DB, "SELECT `date` FROM `ohlcv` LIMIT 5")


def test_plan_bulk_leaves_out_what_is_cheaper_one_by_one() -> None:
    friday, thursday = date(2026, 11, 27), date(2026, 11, 26)
    saturday = date(2026, 11, 28)
    lasts: dict[str, date | None] = {f"T{i}": thursday for i in range(8000)}
    lasts["LATE"] = date(2026, 11, 25)
    lasts["GAP"] = date(2026, 10, 1)
    lasts["NEW"] = None
    plan = plan_bulk(lasts, saturday, universe=8000)
    assert plan == BulkPlan(thursday, frozenset(f"T{i}" for i in range(8000)), 9 + 3)

    # Half a day behind: the longer window costs less than 4,000 tickers one by one.
    half = {**lasts, **{f"T{i}": date(2026, 11, 25) for i in range(4000)}}
    wide = plan_bulk(half, saturday, universe=8000)
    assert wide is not None and wide.after == date(2026, 11, 25) and "LATE" in wide.tickers
    assert "GAP" not in wide.tickers and "NEW" not in wide.tickers

    # On a Saturday after Friday's bars: one query finds no new day for everybody.
    weekend = plan_bulk(dict.fromkeys(lasts, friday), saturday, universe=8000)
    assert weekend is not None and weekend.estimated_requests == 3
    assert plan_bulk(dict.fromkeys(lasts, saturday), saturday, universe=8000) is None
    assert plan_bulk({f"T{i}": thursday for i in range(19)}, saturday, universe=8000) is None
    # A few tickers in a large market: their own requests (3 each) are no more than its pages.
    few = {f"T{i}": thursday for i in range(4)}
    assert plan_bulk(few, saturday, universe=8000, min_tickers=1) is None
    assert plan_bulk({**few, "T4": thursday}, saturday, universe=8000, min_tickers=1)
