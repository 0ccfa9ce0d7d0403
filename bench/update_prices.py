"""update-prices for N tickers' new day: bulk keyset pages against one request per ticker.

    .venv/bin/python bench/update_prices.py [--tickers 1000] [--days 1] [--latency-ms 50] [--rps 50]

Both runs start from the same store (N tickers stored through the day before the new days) on
a scratch database on TEST_DATABASE_URL / DATABASE_URL (else the embedded server), against the
fake DoltHub in its own process listing N symbols. Prints requests and seconds of each, their
ratios, and the seconds the requests alone would take at the production pace
(DOLTHUB_RPS=2). Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench._scratch import scratch_database, server_dsn
from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.stocks import parse_price_row
from ingest.jobs.update_prices import BULK_MIN_TICKERS, run_update_prices
from ingest.progress import Progress
from services.data_coverage import record_written
from services.db import create_pool
from services.market.records import PriceBar
from services.market_data_writes import TickerData, write_objects
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fakes.dolthub_data import FakeData, business_days

TODAY = date(2026, 11, 28)  # the fake's data ends Friday 2026-11-27
FIRST = date(2026, 11, 2)
PRODUCTION_RPS = 2.0

FAKE_SCRIPT = """
import sys
from tests.fakes import dolthub_server
fake = dolthub_server.FakeDoltHub().start()
fake.switches.latency_ms = float(sys.argv[1])
fake.data.synthetic_symbols = int(sys.argv[2])
fake.data.ohlcv_from(sys.argv[3])  # generate the tails before the clock starts
print(fake.url, flush=True)
sys.stdin.read()
"""


@dataclass
class Run:
    label: str
    requests: int
    seconds: float
    summary: str


async def start_fake(
    latency_ms: float, symbols: int, first: date
) -> tuple[asyncio.subprocess.Process, str]:
    """The fake DoltHub in its own process, so its CPU does not compete for our GIL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FAKE_SCRIPT,
        str(latency_ms),
        str(symbols),
        first.isoformat(),
        cwd=str(Path(__file__).resolve().parent.parent),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    url = (await process.stdout.readline()).decode().strip()
    return process, url


async def seed(pool: asyncpg.Pool, store: LocalObjectStore, tickers: list[str], last: date) -> None:
    """Every ticker stored from FIRST through `last`, through the one write path."""
    data = FakeData(synthetic_symbols=len(tickers))
    bars: dict[str, list[PriceBar]] = {}
    for row in data.ohlcv_from(FIRST.isoformat()):
        if (row["date"] or "") <= last.isoformat():
            bars.setdefault(row["act_symbol"] or "", []).append(parse_price_row(row))
    for ticker in tickers:
        written = await write_objects(pool, store, TickerData(ticker, bars=bars[ticker]))
        async with pool.acquire() as conn:
            await record_written(conn, written)


async def update(
    label: str,
    url: str,
    pool: asyncpg.Pool,
    store: LocalObjectStore,
    args: argparse.Namespace,
    bulk_min_tickers: int = BULK_MIN_TICKERS,
) -> Run:
    settings = Settings.from_env({"DOLTHUB_API_URL": url})
    client = DoltHubClient(url, rps=args.rps, timeout=30, max_retries=3)
    progress = Progress("update-prices", interactive=False, log_interval=1e9)
    started = time.perf_counter()
    await run_update_prices(
        settings,
        pool,
        client,
        store,
        progress,
        today=TODAY,
        bulk_min_tickers=bulk_min_tickers,
    )
    seconds = time.perf_counter() - started
    await client.aclose()
    return Run(label, client.stats.requests, seconds, progress.summary_line())


async def bench(args: argparse.Namespace) -> None:
    tickers = [f"S{i:04d}" for i in range(args.tickers)]
    new_days = business_days(FIRST, TODAY)
    last = new_days[-args.days - 1]
    fake, url = await start_fake(args.latency_ms, args.tickers, last)
    try:
        async with scratch_database(server_dsn()) as dsn:
            pool = await create_pool(dsn, max_size=8)
            with tempfile.TemporaryDirectory() as tmp:
                bulk_store = LocalObjectStore(Path(tmp) / "bulk", fsync=False)
                one_store = LocalObjectStore(Path(tmp) / "one", fsync=False)
                await seed(pool, bulk_store, tickers, last)
                shutil.copytree(bulk_store.root, one_store.root)
                bulk = await update("bulk", url, pool, bulk_store, args)
                await pool.execute("UPDATE entities SET price_data_max_date = $1", last)
                one = await update(
                    "per ticker", url, pool, one_store, args, bulk_min_tickers=len(tickers) + 1
                )
            await pool.close()
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        await fake.wait()
    print(
        f"{args.tickers} tickers (DoltHub lists {args.tickers + 8}), {args.days} new trading"
        f" day(s) after {last}, latency {args.latency_ms:g} ms, pacer {args.rps:g} req/s"
    )
    for run in (bulk, one):
        at_production = run.requests / PRODUCTION_RPS
        print(
            f"  {run.label:>10}: {run.requests:6d} requests, {run.seconds:7.2f} s"
            f" (requests alone at DOLTHUB_RPS=2: {at_production:,.0f} s)"
        )
        print(f"              {run.summary}")
    print(
        f"  per ticker / bulk: {one.requests / max(bulk.requests, 1):.0f}× requests,"
        f" {one.seconds / bulk.seconds:.1f}× seconds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1, help="new trading days (1-10)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rps", type=float, default=50.0, help="DOLTHUB_RPS for both runs")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
