"""Every writer leaves a current history object, and writers of one ticker never lose rows."""

from __future__ import annotations

import asyncio
import sys
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest

from ingest.dolthub.client import DoltHubClient
from ingest.jobs import csv_import
from ingest.jobs.backfill import run_backfill
from ingest.jobs.update_prices import run_update_prices
from ingest.progress import Progress
from services.market.records import PriceBar, QuarterFundamentals, Split
from services.market_data_writes import TickerData, ticker_lock_key, write_objects
from services.settings import Settings
from services.storage.history import build_history, encode_history
from services.storage.keys import dividends_key, history_key
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_prices
from services.storage.object_store import ObjectStore
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import ROOT, queue_tickers, run_ingest
from tests.fixtures.object_store import CountingStore
from tests.ingest.jobs.test_csv_import import export

STALE = date(2026, 11, 10)
TODAY = date(2026, 11, 28)


async def assert_history_current(store: ObjectStore, ticker: str) -> None:
    stored = await store.get(history_key(ticker))
    assert stored is not None, f"no history object for {ticker}"
    assert stored == encode_history(await build_history(store, ticker)), ticker


async def backfill(
    settings: Settings, pool: asyncpg.Pool, client: DoltHubClient, store: ObjectStore, day: date
) -> None:
    await queue_tickers(pool, ["AAPL", "KO"])
    progress = Progress("backfill", interactive=False)
    await run_backfill(settings, pool, client, store, progress, workers=2, today=day)
    assert progress.outcomes == {"completed": 2}


async def test_backfill_and_update_prices_keep_the_history_current(
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    dolthub_client: DoltHubClient,
) -> None:
    await backfill(ingest_settings, pool, dolthub_client, ingest_store, STALE)
    for ticker in ("AAPL", "KO"):
        await assert_history_current(ingest_store, ticker)
    before = await ingest_store.get(history_key("KO"))
    progress = Progress("update-prices", interactive=False)
    await run_update_prices(
        ingest_settings, pool, dolthub_client, ingest_store, progress, today=TODAY
    )
    assert progress.outcomes.get("updated") == 2, progress.outcomes
    for ticker in ("AAPL", "KO"):
        await assert_history_current(ingest_store, ticker)
    assert await ingest_store.get(history_key("KO")) != before  # the new bars are in it


async def test_import_csv_leaves_a_current_history(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
) -> None:
    directory = export(fake_dolthub, tmp_path / "export", ["AAPL", "KO"])
    result = await run_ingest(["import-csv", str(directory)], ingest_env)
    assert result.code == 0, result.stderr
    for ticker in ("AAPL", "KO"):
        await assert_history_current(ingest_store, ticker)


async def test_a_first_write_builds_the_history_without_fetching_back_what_it_wrote(
    pool: asyncpg.Pool, ingest_store: LocalObjectStore
) -> None:
    data = TickerData(
        "KO",
        bars=[PriceBar(date(2024, m, 3), 50.0 + m, 51.0, 49.0, 50.5, 1000) for m in (1, 2, 3)],
        quarters=[
            QuarterFundamentals(
                date(2023, 12, 31), sales=100.0, diluted_eps=0.5, shares_outstanding=20.0
            )
        ],
        splits=[Split(date(2024, 2, 1), 2.0, 1.0)],
    )
    counting = CountingStore(ingest_store)
    await write_objects(pool, counting, data)
    # The history object goes once, before the first partition, whatever the writers.
    assert counting.deletes == [history_key("KO")]
    # Each object is read once: the history (is there one to patch?) and each partition by
    # its merge; the build takes the partitions' bytes from what was just written, and reads
    # only the dividends object this write did not touch (absent: never fetched).
    assert sorted(counting.gets) == sorted(set(counting.gets)), counting.gets
    assert dividends_key("KO") in counting.gets and dividends_key("KO") not in counting.puts
    assert history_key("KO") in counting.gets and len(counting.gets) == len(counting.puts) + 1
    assert counting.puts[-1] == history_key("KO")
    await assert_history_current(ingest_store, "KO")


async def test_import_csv_writes_each_history_once_and_current(
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv_import, "PRICE_FLUSH_ROWS", 500)  # several flushes per ticker
    directory = export(fake_dolthub, tmp_path / "export", ["AAPL", "KO"])
    counting = CountingStore(ingest_store)
    progress = Progress("import-csv", interactive=False)
    await csv_import.run_import_csv(pool, counting, csv_import.find_csv_files(directory), progress)
    assert progress.counts["bars written"] > 2 * 500, progress.counts
    for ticker in ("AAPL", "KO"):
        assert counting.puts.count(history_key(ticker)) == 1, ticker
        await assert_history_current(ingest_store, ticker)


def test_lock_keys_are_stable_signed_64_bit_and_per_ticker() -> None:
    # Pinned: writers of two releases running side by side must agree on the key.
    assert ticker_lock_key("aapl") == ticker_lock_key("AAPL") == 2520718712557494019
    assert -(2**63) <= ticker_lock_key("T0003") < 0  # the full signed range is used
    assert len({ticker_lock_key(f"T{n:04d}") for n in range(1000)}) == 1000


WRITER = """
import asyncio, sys
from datetime import date
from pathlib import Path
from services.market_data_writes import TickerData, write_objects
from services.db import create_pool
from services.market.records import PriceBar
from services.storage.local import LocalObjectStore

async def main(dsn, root, days):
    pool = await create_pool(dsn, min_size=1, max_size=2)
    store = LocalObjectStore(Path(root), fsync=False)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for day in days:
        bar = PriceBar(date.fromisoformat(day), 10.0, 11.0, 9.0, 10.5, 100)
        await write_objects(pool, store, TickerData("RACE", bars=[bar]))
    await pool.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(",")))
"""


async def test_two_writer_processes_on_one_month_lose_no_row(
    database_url: str, ingest_store: LocalObjectStore
) -> None:
    # Both processes merge single bars into the same two months at the same moments: each
    # write is a read-merge-write of that month's object, so without the ticker lock one
    # process's merge regularly overwrites the other's.
    days = [date(2024, 1, 1) + timedelta(days=n) for n in range(60)]
    halves = [[d.isoformat() for d in days[parity::2]] for parity in (0, 1)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            database_url,
            str(ingest_store.root),
            ",".join(half),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for half in halves
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line == b"ready\n", (line, await proc.stderr.read() if proc.stderr else b"")
    for proc in procs:  # start both at once
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 50)
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    assert (await read_prices(ingest_store, "RACE")).dates == days
    await assert_history_current(ingest_store, "RACE")
