"""Benchmark: read N tickers x Y years of monthly price partitions from the local store.

Usage: python bench/parquet_read.py [--tickers 200] [--years 10] [--concurrency 4]
Prints seconds and tickers/s for full-column and (date, close) reads, and the projection to
1,000 tickers (SPEC §10: evaluation of 1,000 tickers x 10 years in < 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.market_data import PriceBar  # noqa: E402
from ingest.object_store import LocalObjectStore  # noqa: E402
from ingest.parquet_layout import read_prices, write_prices  # noqa: E402


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
) -> tuple[float, int]:
    gate = asyncio.Semaphore(concurrency)
    rows = 0

    async def one(ticker: str) -> None:
        nonlocal rows
        async with gate:
            series = await read_prices(store, ticker, start, end, columns=columns)
            rows += len(series.closes)  # materialise what a signal computation would use

    began = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tickers))
    return time.perf_counter() - began, rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
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
            seconds, rows = await read_all(store, tickers, start, end, columns, concurrency)
            rate = len(tickers) / seconds
            print(
                f"read {label:<24} x{concurrency}: {seconds:6.2f} s, {rate:7.1f} tickers/s, "
                f"{rows / seconds / 1e6:5.2f} M rows/s; 1,000 tickers ~ {1000 / rate:5.1f} s"
            )


if __name__ == "__main__":
    asyncio.run(main())
