"""update-prices: only bars after the last stored date are fetched; re-running changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest

from ingest.dolthub.client import DoltHubClient
from ingest.jobs.backfill import run_backfill
from ingest.jobs.update_prices import run_update_prices
from ingest.progress import Progress
from services.settings import Settings
from services.storage.keys import price_key
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_fundamentals, read_prices, read_splits
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import STALE, queue_tickers, run_ingest, sql_requests_for

TODAY = date(2026, 11, 28)  # the fake's data ends 2026-11-27
Update = Callable[..., Awaitable[Progress]]


@pytest.fixture
def update(
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    dolthub_client: DoltHubClient,
) -> Update:
    async def run(tickers: list[str] | None = None) -> Progress:
        progress = Progress("update-prices", interactive=False)
        return await run_update_prices(
            ingest_settings,
            pool,
            dolthub_client,
            ingest_store,
            progress,
            tickers=tickers,
            today=TODAY,
        )

    return run


def source_days(fake: FakeDoltHub, ticker: str) -> list[date]:
    return [date.fromisoformat(r["date"] or "") for r in fake.data.ohlcv(ticker)]


async def test_update_fetches_only_new_bars_and_is_idempotent(
    stale_store: LocalObjectStore, update: Update, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub
) -> None:
    before = await read_prices(stale_store, "AAPL")
    assert before.last_date is not None and before.last_date <= STALE
    fake_dolthub.reset()  # forget the backfill's requests
    progress = await update()
    assert progress.outcomes == {"updated": 2} and not progress.failures
    queries = sql_requests_for(fake_dolthub, "ohlcv", "AAPL")
    assert len(queries) == 1
    assert f"`date` >= '{before.last_date + timedelta(days=1)}'" in queries[0]
    after = await read_prices(stale_store, "AAPL")
    days = [d for d in source_days(fake_dolthub, "AAPL") if d >= after.dates[0]]
    assert after.dates == days  # every bar once, old and new
    row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'AAPL'")
    assert row is not None
    assert row["price_data_max_date"] == days[-1] == date(2026, 11, 27)
    assert row["price_data_min_date"] == before.dates[0]

    november = price_key("AAPL", 2026, 11)
    first_bytes = await stale_store.get(november)
    fake_dolthub.reset()
    progress = await update()
    assert progress.outcomes == {"up to date": 2}
    queries = sql_requests_for(fake_dolthub, "ohlcv", "AAPL")
    assert len(queries) == 1 and "`date` >= '2026-11-28'" in queries[0]
    assert await stale_store.get(november) == first_bytes
    assert (await read_prices(stale_store, "AAPL")).dates == days


async def test_updated_objects_equal_a_fresh_backfill(
    stale_store: LocalObjectStore,
    update: Update,
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    dolthub_client: DoltHubClient,
    tmp_path: Path,
) -> None:
    await update(["KO"])
    fresh = LocalObjectStore(tmp_path / "fresh", fsync=False)
    await pool.execute("DELETE FROM backfill_queue")
    await queue_tickers(pool, ["KO"])
    progress = Progress("backfill", interactive=False)
    await run_backfill(ingest_settings, pool, dolthub_client, fresh, progress, today=TODAY)
    keys = await fresh.list("prices/v1/KO/")
    assert keys == await stale_store.list("prices/v1/KO/")
    for key in keys:
        assert await fresh.get(key) == await stale_store.get(key), key


async def test_cli_update_prices_with_tickers(
    stale_store: LocalObjectStore, ingest_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    result = await run_ingest(["update-prices", "--tickers", "ko,AAPL"], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("update-prices: ") and "2 updated" in result.stdout
    max_dates = await pool.fetch("SELECT price_data_max_date AS d FROM entities")
    assert {r["d"] for r in max_dates} == {date(2026, 11, 27)}

    missing = await run_ingest(["update-prices", "--tickers", "MSFT"], ingest_env)
    assert missing.code == 1
    assert "1 failed" in missing.stdout and "MSFT: no price data yet" in missing.stdout

    bad = await run_ingest(["update-prices", "--tickers", "A B"], ingest_env)
    assert bad.code == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("error: argument --tickers: invalid ticker 'A B'")


async def test_update_stores_new_splits_and_newly_published_quarters(
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    dolthub_client: DoltHubClient,
    fake_dolthub: FakeDoltHub,
    update: Update,
) -> None:
    ticker, split = next(
        (t, s[0])
        for t in (f"S{i:04d}" for i in range(1000))
        if (s := fake_dolthub.data.splits(t)) and date(2026, 2, 1) <= s[0].ex_date <= TODAY
    )
    before_split = split.ex_date - timedelta(days=5)
    await queue_tickers(pool, [ticker])
    backfill = Progress("backfill", interactive=False)
    await run_backfill(
        ingest_settings, pool, dolthub_client, ingest_store, backfill, today=before_split
    )
    assert await read_splits(ingest_store, ticker) == []
    stale_quarter = (await read_fundamentals(ingest_store, ticker))[-1].period_end_date
    assert (TODAY - stale_quarter).days >= 100
    last_bar = (await read_prices(ingest_store, ticker)).last_date
    assert last_bar is not None
    fake_dolthub.reset()

    progress = await update([ticker])
    assert progress.outcomes == {"updated": 1}
    assert [s.ex_date for s in await read_splits(ingest_store, ticker)] == [split.ex_date]
    split_queries = sql_requests_for(fake_dolthub, "split", ticker)
    assert len(split_queries) == 1
    assert f"`ex_date` >= '{last_bar + timedelta(days=1)}'" in split_queries[0]
    probe = sql_requests_for(fake_dolthub, "income_statement", ticker)[0]
    assert f"`date` >= '{stale_quarter + timedelta(days=1)}'" in probe
    quarters = await read_fundamentals(ingest_store, ticker)
    row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = $1", ticker)
    assert row is not None and row["fundamental_data_max_date"] == quarters[-1].period_end_date
    assert quarters[-1].period_end_date > stale_quarter

    fake_dolthub.reset()
    again = await update([ticker])
    assert again.outcomes == {"up to date": 1}
    assert [r.sql for r in fake_dolthub.requests if "ohlcv" not in (r.sql or "")] == []
