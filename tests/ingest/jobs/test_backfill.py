"""The backfill worker in-process: fake DoltHub over HTTP, real Postgres, a temp object store."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest

from ingest.dolthub.client import DoltHubClient
from ingest.jobs.backfill import backfill_start, run_backfill
from ingest.progress import Progress
from services.settings import Settings
from services.storage.history import read_history
from services.storage.local import LocalObjectStore
from services.storage.market_files import (
    read_dividends,
    read_fundamentals,
    read_prices,
    read_splits,
)
from services.storage.object_store import ObjectStore
from tests.fakes.dolthub_server import EARNINGS_DB, LEAK_PATH, FakeDoltHub
from tests.fakes.dolthub_sql import DATABASE_TABLES
from tests.fixtures.app import GraphQLClient
from tests.fixtures.ingest import missing_month_objects, queue_tickers, run_ingest, sql_requests_for
from tests.fixtures.object_store import create_bucket, new_s3_store, s3_env

TODAY = date(2026, 11, 28)  # the fake's data ends 2026-11-27
Backfill = Callable[..., Awaitable[Progress]]


@pytest.fixture
def backfill(
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    dolthub_client_factory: Callable[..., DoltHubClient],
) -> Backfill:
    """`await backfill(workers=1, max_items=None, store=…, **client_options)` → its Progress."""

    async def run(
        workers: int = 1,
        max_items: int | None = None,
        store: ObjectStore | None = None,
        **client_options: object,
    ) -> Progress:
        progress = Progress("backfill", interactive=False)
        client = dolthub_client_factory(**client_options)
        return await run_backfill(
            ingest_settings,
            pool,
            client,
            store or ingest_store,
            progress,
            workers=workers,
            max_items=max_items,
            today=TODAY,
        )

    return run


async def entity(pool: asyncpg.Pool, ticker: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = $1", ticker)
    assert row is not None
    return row


async def job(pool: asyncpg.Pool, ticker: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT *, now() AS db_now FROM backfill_queue WHERE ticker = $1", ticker
    )
    assert row is not None
    return row


def fake_days(fake: FakeDoltHub, ticker: str) -> list[date]:
    start = backfill_start(TODAY, 10)
    days = [date.fromisoformat(r["date"] or "") for r in fake.data.ohlcv(ticker)]
    return [d for d in days if start <= d <= TODAY]


def earnings_rejects(fake: FakeDoltHub, ticker: str, since: date) -> int:
    """Corrupted quarterly earnings rows with a period end on or after `since`."""
    count = 0
    for table in sorted(DATABASE_TABLES[EARNINGS_DB]):
        column = "period_end_date" if table == "eps_history" else "date"
        for row in fake.data.earnings(ticker, table):
            day = row[column] or ""
            if row.get("period", "Quarter") == "Quarter" and day >= since.isoformat():
                count += fake.earnings_corruption_of(table, ticker, day) is not None
    return count


async def test_backfill_writes_every_object_then_marks_the_entity_ready(
    backfill: Backfill,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    await queue_tickers(pool, ["AAPL"])
    progress = await backfill()
    assert progress.outcomes == {"completed": 1} and not progress.failures
    row = await entity(pool, "AAPL")
    days = fake_days(fake_dolthub, "AAPL")
    assert row["data_status"] == "ready" and row["has_price_data"] and row["has_fundamental_data"]
    assert (row["price_data_min_date"], row["price_data_max_date"]) == (days[0], days[-1])
    assert row["name"] == "Apple Inc. - Common Stock" and row["exchange"]
    assert row["last_data_update"] is not None
    assert await missing_month_objects(ingest_store, "AAPL", days[0], days[-1]) == []
    stored = await read_prices(ingest_store, "AAPL")
    assert stored.dates == days
    raw = {r["date"]: r for r in fake_dolthub.data.ohlcv("AAPL")}
    first = raw[days[0].isoformat()]
    assert stored.closes[0] == float(first["close"] or "nan")
    assert stored.volumes[0] == int(first["volume"] or "-1")
    quarters = await read_fundamentals(ingest_store, "AAPL")
    assert quarters and row["fundamental_data_max_date"] == quarters[-1].period_end_date
    expected_splits = fake_dolthub.data.splits("AAPL")
    assert [s.ex_date for s in await read_splits(ingest_store, "AAPL")] == [
        s.ex_date for s in expected_splits
    ]
    assert await read_dividends(ingest_store, "AAPL") == []  # fetched: AAPL pays none
    assert (await job(pool, "AAPL"))["status"] == "completed"
    # One bounded query per calendar year for prices, never an unbounded scan.
    price_queries = sql_requests_for(fake_dolthub, "ohlcv", "AAPL")
    assert len(price_queries) == TODAY.year - backfill_start(TODAY, 10).year + 1
    assert all("`date` >=" in q and "`date` <" in q for q in price_queries)


async def test_rate_limit_storm_is_retried_and_paced(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["MSFT"])
    fake_dolthub.fail_next(5, status=429, retry_after="0.2")
    rps = 10.0
    progress = await backfill(rps=rps, max_retries=8)
    assert progress.outcomes == {"completed": 1}
    assert (await entity(pool, "MSFT"))["data_status"] == "ready"
    times = fake_dolthub.request_times()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # The 6th request is the first answered normally; Retry-After (0.2 s) held everyone back.
    assert times[5] - times[0] >= 0.2 + 4 / rps
    # Never faster than the configured rate: any 6 consecutive arrivals span ≥ 5 intervals
    # (less a little for event-loop and loopback jitter), and on average slower than it.
    spans = [b - a for a, b in zip(times, times[5:], strict=False)]
    assert min(spans) >= 5 / rps - 0.06
    assert (times[-1] - times[0]) / len(gaps) >= 1 / rps


async def test_invalid_source_rows_are_rejected_counted_and_never_written(
    backfill: Backfill,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    await queue_tickers(pool, ["NVDA"])
    fake_dolthub.switches.corrupt_every = 40
    start = backfill_start(TODAY, 10)
    expected = fake_dolthub.expected_rejects("NVDA", start, TODAY)
    assert sum(expected.values()) > 20 and len(expected) >= 4
    bad_quarters = earnings_rejects(fake_dolthub, "NVDA", date(start.year - 2, 1, 1))
    assert bad_quarters > 0
    progress = await backfill()
    assert progress.outcomes == {"completed": 1}
    total = sum(expected.values()) + bad_quarters
    assert progress.counts["rows rejected"] == total, progress.summary_line()
    assert f"{total} rows rejected" in progress.summary_line()
    corrupt_days = {
        date.fromisoformat(r["date"] or "")
        for r in fake_dolthub.data.ohlcv("NVDA")
        if fake_dolthub.corruption_of("NVDA", r["date"] or "")
    }
    stored = await read_prices(ingest_store, "NVDA")
    assert len(stored) == len(fake_days(fake_dolthub, "NVDA")) - sum(expected.values())
    assert not corrupt_days & set(stored.dates)
    for column in (stored.opens, stored.highs, stored.lows, stored.closes):
        assert all(math.isfinite(v) and v > 0 for v in column)
    assert all(h >= low for h, low in zip(stored.highs, stored.lows, strict=True))


async def test_unknown_ticker_fails_at_once_and_is_unavailable(
    backfill: Backfill,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    await queue_tickers(pool, ["NODATA", "KO"])
    progress = await backfill()
    assert progress.outcomes == {"completed": 1, "unavailable": 1}
    assert not progress.failures  # an unknown ticker is an outcome, not a failed run
    row = await job(pool, "NODATA")
    assert row["status"] == "failed" and row["retry_count"] == 0
    assert row["error_message"] == (
        f"DoltHub has no price rows for NODATA from {backfill_start(TODAY, 10)} to {TODAY}"
    )
    missing = await entity(pool, "NODATA")
    assert missing["data_status"] == "unavailable" and not missing["has_price_data"]
    assert await ingest_store.list("prices/v1/NODATA/") == []
    assert sql_requests_for(fake_dolthub, "income_statement", "NODATA") == []
    assert (await entity(pool, "KO"))["data_status"] == "ready"


async def test_transient_failures_follow_the_backoff_then_fail(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["JPM"])
    fake_dolthub.fail_next(10_000, status=503)
    for attempt, minutes in enumerate((1, 5, 30), start=1):
        progress = await backfill(max_retries=0)
        assert progress.outcomes == {"retry scheduled": 1} and not progress.failures
        row = await job(pool, "JPM")
        assert row["status"] == "pending" and row["retry_count"] == attempt
        assert "HTTP 503" in row["error_message"]
        due_in = row["next_attempt_at"] - row["db_now"]
        assert abs(due_in - timedelta(minutes=minutes)) < timedelta(seconds=10)
        assert (await backfill(max_retries=0)).done == 0  # not due yet: nothing claimed
        await pool.execute("UPDATE backfill_queue SET next_attempt_at = now()")
    progress = await backfill(max_retries=0)
    assert progress.failed == 1 and "gave up after 3 retries" in progress.failures[0]
    row = await job(pool, "JPM")
    assert row["status"] == "failed" and row["retry_count"] == 3
    assert row["error_message"].startswith("gave up after 3 retries: DoltHub")
    assert (await entity(pool, "JPM"))["data_status"] == "none"


async def test_refused_query_is_a_failed_run_but_not_an_unavailable_ticker(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["KO"])
    fake_dolthub.fail_next(1, status=400)  # e.g. a misconfigured database name
    progress = await backfill()
    assert progress.failed == 1
    assert "answered HTTP 400" in progress.failures[0]
    assert progress.failures[0].endswith("(retry 1 scheduled)")
    row = await job(pool, "KO")
    assert row["status"] == "pending" and row["retry_count"] == 1
    assert (await entity(pool, "KO"))["data_status"] == "queued"


STOCK_BACKFILL = '{ stock(ticker: "KO") { backfill { status retryCount errorMessage } } }'


async def test_a_redirect_to_a_page_with_secrets_never_reaches_the_public_api(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub, gql: GraphQLClient
) -> None:
    await queue_tickers(pool, ["KO"])
    fake_dolthub.switches.redirect_to = fake_dolthub.leak_url
    progress = await backfill()
    assert progress.failed == 1 and "redirect" in progress.failures[0]
    assert not [r for r in fake_dolthub.requests if r.path == LEAK_PATH]  # never followed
    row = await job(pool, "KO")
    # Operators keep the raw text; the API gets the category only.
    assert "302" in row["error_message"] and LEAK_PATH in row["error_message"]
    assert row["error_category"] == "rejected by source"
    answer = await gql.http.post("/graphql", json={"query": STOCK_BACKFILL})
    assert answer.json()["data"]["stock"]["backfill"] == {
        "status": "PENDING",
        "retryCount": 1,
        "errorMessage": "rejected by source",
    }
    assert "db_password" not in answer.text and LEAK_PATH not in answer.text


async def test_public_error_text_is_a_category_whatever_the_source_said(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub, gql: GraphQLClient
) -> None:
    await queue_tickers(pool, ["KO"])
    fake_dolthub.fail_next(10_000, status=503)  # the body: "upstream says no"
    await backfill(max_retries=0)
    body = await gql(STOCK_BACKFILL)
    assert body["data"]["stock"]["backfill"]["errorMessage"] == "source unavailable"
    assert "upstream" not in str(body)
    assert "upstream says no" in (await job(pool, "KO"))["error_message"]


async def test_an_oversized_answer_is_refused_unread(
    backfill: Backfill, pool: asyncpg.Pool, fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["KO"])
    fake_dolthub.switches.oversize_bytes = 3 * 1024 * 1024
    progress = await backfill(max_response_bytes=1024 * 1024)
    assert progress.failed == 1 and "DOLTHUB_MAX_RESPONSE_MB" in progress.failures[0]
    row = await job(pool, "KO")
    assert row["status"] == "pending" and row["error_category"] == "rejected by source"


async def test_object_write_failure_leaves_the_entity_untouched(
    backfill: Backfill, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's root should be")
    await queue_tickers(pool, ["KO"])
    progress = await backfill(store=LocalObjectStore(blocker, fsync=False))
    assert progress.outcomes == {"retry scheduled": 1}
    row = await entity(pool, "KO")
    assert not row["has_price_data"] and row["data_status"] == "queued"
    assert row["price_data_min_date"] is None
    assert "not-a-directory" in (await job(pool, "KO"))["error_message"]


async def test_max_items_bounds_the_run_across_workers(
    backfill: Backfill, pool: asyncpg.Pool
) -> None:
    await queue_tickers(pool, ["AAPL", "MSFT", "KO", "JPM", "SPY"])
    progress = await backfill(workers=3, max_items=2)
    assert progress.outcomes == {"completed": 2}
    statuses = await pool.fetch("SELECT status, count(*) FROM backfill_queue GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses} == {"completed": 2, "pending": 3}


async def test_cli_backfill_into_s3(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    moto_endpoint: str,
    aws_test_env: None,
    tmp_path: Path,
) -> None:
    bucket = create_bucket(moto_endpoint)
    await queue_tickers(pool, ["KO"])
    env = s3_env(f"s3://{bucket}/prod", moto_endpoint, tmp_path)
    result = await run_ingest(["backfill"], ingest_env, **env)
    assert result.code == 0, result.stderr
    assert "1 completed" in result.stdout
    store = new_s3_store(moto_endpoint, prefix="prod", bucket=bucket)
    try:
        row = await entity(pool, "KO")
        stored = await read_prices(store, "KO")
        assert (stored.first_date, stored.last_date) == (
            row["price_data_min_date"],
            row["price_data_max_date"],
        )
        assert row["data_status"] == "ready" and len(stored) > 2000
    finally:
        await store.close()


async def test_backfill_stores_the_dividends_of_its_window(
    backfill: Backfill,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    await queue_tickers(pool, ["KO"])
    progress = await backfill()
    assert progress.outcomes == {"completed": 1} and not progress.failures
    start = backfill_start(TODAY, 10).isoformat()
    source = [r for r in fake_dolthub.data.dividend_rows("KO") if (r["ex_date"] or "") >= start]
    stored = await read_dividends(ingest_store, "KO")
    assert stored is not None and len(stored) == len(source) > 10
    assert [(d.ex_date.isoformat(), d.amount) for d in stored] == [
        (r["ex_date"], float(r["amount"] or "nan")) for r in source
    ]
    assert progress.counts["dividends written"] == len(source)
    history = await read_history(ingest_store, "KO")
    assert history is not None and history.dividend_records() == stored
