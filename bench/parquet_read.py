"""Benchmark: read N tickers x Y years of monthly price partitions from the local store.

Usage: python bench/parquet_read.py [--tickers 200] [--years 10] [--concurrency 4]
Prints seconds and tickers/s for full-column and (date, close) reads, and the projection to
1,000 tickers (target: evaluation of 1,000 tickers x 10 years in < 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.market.records import PriceBar
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_prices, write_prices


def synthetic_bars(seed: int, start: date, end: date) -> list[PriceBar]:
    """A deterministic random-walk-ish series on weekdays."""
    out, price, day = [], 50.0 + seed % 200, start
    while day <= end:
        if day.weekday() < 5:
            price *= 1 + 0.01 * math.sin(seed * 7.1 + day.toordinal() * 0.37)
            out.append(PriceBar(day, price, price * 1.01, price * 0.99, price, 1000 + seed))
        day += timedelta(days=1)
    return out


async def populate(store: LocalObjectStore, tickers: Sequence[str], start: date, end: date) -> int:
    objects = 0
    for n, ticker in enumerate(tickers):
        objects += len(await write_prices(store, ticker, synthetic_bars(n, start, end)))
    return objects


async def read_all(
    store: LocalObjectStore,
    tickers: Sequence[str],
    start: date,
    end: date,
    columns: Sequence[str] | None,
    concurrency: int,
) -> tuple[float, float, int]:
    gate = asyncio.Semaphore(concurrency)
    rows = 0

    async def one(ticker: str) -> None:
        nonlocal rows
        async with gate:
            series = await read_prices(store, ticker, start, end, columns=columns)
            rows += len(series.closes)  # materialise what a signal computation would use

    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(t) for t in tickers))
    return time.perf_counter() - began, time.process_time() - cpu_began, rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    end = date(2025, 12, 31)
    start = date(end.year - args.years + 1, 1, 1)
    tickers = [f"T{n:04d}" for n in range(args.tickers)]
    with tempfile.TemporaryDirectory(prefix="parquet-bench-") as tmp:
        store = LocalObjectStore(Path(tmp), fsync=False)
        began = time.perf_counter()
        objects = await populate(store, tickers, start, end)
        written = time.perf_counter() - began
        print(f"wrote {objects} objects for {len(tickers)} tickers in {written:.1f} s")
        for label, columns, concurrency in (
            ("all columns, sequential", None, 1),
            ("all columns", None, args.concurrency),
            ("date+close", ("date", "close"), args.concurrency),
        ):
            seconds, cpu, rows = await read_all(store, tickers, start, end, columns, concurrency)
            rate = len(tickers) / seconds
            per_1000 = 1000 / len(tickers)
            print(
                f"read {label:<24} x{concurrency}: {seconds:6.2f} s wall ({cpu:6.2f} s CPU), "
                f"{rate:6.1f} tickers/s, {rows / seconds / 1e6:5.2f} M rows/s; "
                f"1,000 tickers ~ {seconds * per_1000:5.1f} s wall, {cpu * per_1000:5.1f} s CPU"
            )


if __name__ == "__main__":
    asyncio.run(main())
