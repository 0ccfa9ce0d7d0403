"""Several `python -m ingest backfill` processes on one queue; a worker killed mid-ticker."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import asyncpg
import pytest

from services.storage.local import LocalObjectStore
from services.storage.market_files import price_date_range
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import (
    missing_month_objects,
    queue_tickers,
    run_ingest,
    sql_requests_for,
    start_slow_backfill,
)

pytestmark = pytest.mark.slow


async def assert_entities_consistent(
    pool: asyncpg.Pool, store: LocalObjectStore, tickers: list[str]
) -> None:
    """Every entity marked ready has objects for every month between its min and max dates."""
    rows = await pool.fetch("SELECT * FROM entities WHERE ticker = ANY($1::text[])", tickers)
    assert len(rows) == len(tickers)
    for row in rows:
        assert row["data_status"] == "ready" and row["has_price_data"], row["ticker"]
        first, last = row["price_data_min_date"], row["price_data_max_date"]
        assert await price_date_range(store, row["ticker"]) == (first, last)
        assert await missing_month_objects(store, row["ticker"], first, last) == []


async def test_four_processes_process_each_ticker_exactly_once(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    tickers = [f"S{i:04d}" for i in range(40)]
    await queue_tickers(pool, tickers)
    results = await asyncio.gather(
        *(run_ingest(["backfill", "--workers", "2"], ingest_env) for _ in range(4))
    )
    for result in results:
        assert result.code == 0, result.stderr
        assert result.stdout.startswith("backfill: "), result.stdout
    jobs = await pool.fetch("SELECT ticker, status, locked_by, retry_count FROM backfill_queue")
    assert {j["status"] for j in jobs} == {"completed"} and len(jobs) == 40
    assert all(j["retry_count"] == 0 for j in jobs)
    # Work was shared: more than one process (host:pid) took jobs.
    assert len({j["locked_by"].rsplit(":", 1)[0] for j in jobs}) > 1
    completed = sum(int(r.stdout.split(" completed")[0].rsplit(" ", 1)[-1]) for r in results)
    assert completed == 40
    # Each ticker fetched exactly once: one symbol lookup and one query per calendar year.
    symbol_lookups = Counter(
        t for t in tickers for _ in sql_requests_for(fake_dolthub, "symbol", t)
    )
    assert symbol_lookups == dict.fromkeys(tickers, 1)
    year_queries = {len(sql_requests_for(fake_dolthub, "ohlcv", t)) for t in tickers}
    assert len(year_queries) == 1
    await assert_entities_consistent(pool, ingest_store, tickers)


async def test_killed_worker_leaves_nothing_half_done_and_its_job_is_reclaimed(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    # Long enough that the early run below starts within it even on a loaded machine (a
    # 2 s lease was shorter than a process start-up under load).
    lease = 6
    env = {**ingest_env, "BACKFILL_LEASE_SECONDS": str(lease)}
    victim = await start_slow_backfill(pool, fake_dolthub, env, "AAPL")
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    assert victim.returncode == -signal.SIGKILL
    fake_dolthub.switches.latency_ms = 0
    entity = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'AAPL'")
    assert entity is not None
    assert not entity["has_price_data"] and entity["data_status"] == "queued"
    assert entity["price_data_min_date"] is None

    # Within the lease the dead worker's job is still held: nobody else takes it.
    early = await run_ingest(["backfill"], env)
    assert early.code == 0 and "0 failed" in early.stdout and "completed" not in early.stdout
    assert await pool.fetchval("SELECT status FROM backfill_queue") == "processing"

    # Wait for the lease to run out by the database's clock, which is the one that decides.
    remaining = await pool.fetchval(
        "SELECT extract(epoch FROM updated_at + make_interval(secs => $1) - now())::float8"
        " FROM backfill_queue",
        float(lease),
    )
    await asyncio.sleep(max(0.0, remaining) + 0.2)
    late = await run_ingest(["backfill"], env)
    assert late.code == 0, late.stderr
    assert "1 completed" in late.stdout
    assert "whose lease expired: now pending" in late.stderr
    job = await pool.fetchrow("SELECT * FROM backfill_queue")
    assert job is not None and job["status"] == "completed" and job["retry_count"] == 1
    await assert_entities_consistent(pool, ingest_store, ["AAPL"])
