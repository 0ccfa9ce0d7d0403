"""Benchmark: `run_evaluation` over N tickers x 10+ years from a local Parquet store.

Usage: python bench/evaluate.py [--tickers 1000] [--years 12] [--store DIR] [--processes 2]
Generation (not timed) writes synthetic prices + quarterly fundamentals (+ a 2-for-1 split
for every 10th ticker) into a temporary LocalObjectStore, or reuses --store DIR when it
already holds them. A scratch database is created on TEST_DATABASE_URL / DATABASE_URL (else
the embedded server), migrated, filled with one entity + one watcher per ticker, and dropped
at the end. Prints seconds, tickers/s and the share of time spent reading Parquet
(target: 1,000 tickers x 10 years in < 10 s). With --processes N it then runs N
evaluator processes at once on a fresh run of the same date (the scale-out path: they split
the entities through the claims table) and prints their wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database
from ingest.evaluation.run import run_evaluation
from services.db import resolve_database_url
from services.settings import Settings
from services.storage.keys import fundamentals_key, price_key, splits_key
from services.storage.local import LocalObjectStore
from services.storage.parquet import FUNDAMENTALS_SCHEMA, PRICE_SCHEMA, SPLITS_SCHEMA, encode_rows

AS_OF = date(2025, 12, 31)
WORKER = """
import asyncio, sys
from datetime import date
from pathlib import Path
from ingest.evaluation.run import run_evaluation
from services.storage.factory import LocalObjectStore
from services.settings import Settings

async def main():
    store = LocalObjectStore(Path(sys.argv[2]), fsync=False)
    day = date.fromisoformat(sys.argv[3])
    s = await run_evaluation(Settings.from_env(), sys.argv[1], as_of=day, store=store)
    print(s.entities, s.failures)

asyncio.run(main())
"""


def weekdays(start: date, end: date) -> list[date]:
    days = (end - start).days + 1
    return [d for d in (start + timedelta(days=i) for i in range(days)) if d.weekday() < 5]


def write_ticker(root: Path, n: int, days: list[date]) -> None:
    """One ticker's month partitions, quarter partitions and (sometimes) a split object."""
    rng = random.Random(n)
    store = LocalObjectStore(root, fsync=False)
    split_day = days[len(days) // 2] if n % 10 == 0 else None
    price = 20.0 + n % 300
    months: dict[tuple[int, int], list[tuple[object, ...]]] = {}
    for day in days:
        price *= math.exp(rng.gauss(0.0003, 0.02))
        raw = price * 2 if split_day and day < split_day else price
        row = (day, raw, raw * 1.01, raw * 0.99, raw, 10_000 + n)
        months.setdefault((day.year, day.month), []).append(row)
    for (year, month), rows in months.items():
        _put(store, price_key(f"T{n:04d}", year, month), encode_rows(rows, PRICE_SCHEMA))
    ebitda, shares = 1e8 * (1 + n % 7), 1e8
    for year in range(days[0].year - 1, days[-1].year + 1):
        for month, last in ((3, 31), (6, 30), (9, 30), (12, 31)):
            end = date(year, month, last)
            ebitda *= math.exp(rng.gauss(0.01, 0.05))
            per_share = 2.0 if split_day and end < split_day else 1.0
            sales = ebitda * 4
            quarter = (
                end,
                sales,
                ebitda,
                ebitda * 0.8,
                ebitda * 0.6,
                ebitda * 0.6 / shares * per_share,
                shares / per_share,
                5e7,
                1e8,
                None,
                None,
            )
            _put(
                store,
                fundamentals_key(f"T{n:04d}", end),
                encode_rows([quarter], FUNDAMENTALS_SCHEMA),
            )
    if split_day:
        _put(store, splits_key(f"T{n:04d}"), encode_rows([(split_day, 2.0, 1.0)], SPLITS_SCHEMA))


def _put(store: LocalObjectStore, key: str, data: bytes) -> None:
    path = store.path_for(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(root: Path, tickers: int, years: int) -> None:
    marker = root / f".generated-{tickers}-{years}"
    if marker.exists():
        print(f"reusing generated store {root}")
        return
    began = time.perf_counter()
    days = weekdays(date(AS_OF.year - years, AS_OF.month, AS_OF.day) + timedelta(days=1), AS_OF)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda n: write_ticker(root, n, days), range(tickers)))
    marker.touch()
    print(f"generated {tickers} tickers x {len(days)} days in {time.perf_counter() - began:.0f} s")


async def seed(dsn: str, tickers: int, years: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        user = uuid.uuid4()
        await conn.execute("INSERT INTO users (id) VALUES ($1)", user)
        first = date(AS_OF.year - years, AS_OF.month, AS_OF.day)
        await conn.execute(
            """
            WITH e AS (
                INSERT INTO entities (ticker, has_price_data, price_data_min_date,
                                      price_data_max_date, has_fundamental_data,
                                      fundamental_data_min_date, data_status)
                SELECT 'T' || lpad(n::text, 4, '0'), true, $2::date, $3::date, true,
                       make_date(extract(year FROM $2::date)::int - 1, 3, 31), 'ready'
                FROM generate_series(0, $1 - 1) AS n
                RETURNING id
            ), w AS (
                INSERT INTO watchlists (user_id, entity_id) SELECT $4, id FROM e RETURNING entity_id
            )
            INSERT INTO user_entity_settings (user_id, entity_id) SELECT $4, entity_id FROM w
            """,
            tickers,
            first,
            AS_OF,
            user,
        )
    finally:
        await conn.close()


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def parallel_run(dsn: str, root: Path, processes: int) -> None:
    """N evaluator processes on one run of AS_OF; they split the entities via the claims."""
    began = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            dsn,
            str(root),
            AS_OF.isoformat(),
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(processes)
    ]
    outputs = [(await proc.communicate())[0].decode().split() for proc in procs]
    seconds = time.perf_counter() - began
    shares = [int(out[0]) for out in outputs]
    print(
        f"{processes} evaluator processes on one run: {seconds:.1f} s wall incl. start-up, "
        f"{sum(shares) / seconds:.0f} tickers/s, entities per process {shares} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=1000)
    parser.add_argument("--years", type=int, default=12, help="years of generated history")
    parser.add_argument("--store", type=Path, help="generated-store directory to (re)use")
    parser.add_argument(
        "--processes", type=int, default=2, help="separate evaluator processes for a last run"
    )
    args = parser.parse_args()
    tmp = None if args.store else tempfile.TemporaryDirectory(prefix="eval-bench-")
    root = args.store or Path(tmp.name)  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    generate(root, args.tickers, args.years)
    settings = Settings.from_env()
    server = os.environ.get("TEST_DATABASE_URL") or resolve_database_url(settings)
    try:
        async with scratch_database(server, "mc_bench_eval") as dsn:
            await bench(settings, dsn, root, args)
    finally:
        if tmp is not None:
            tmp.cleanup()


async def bench(settings: Settings, dsn: str, root: Path, args: argparse.Namespace) -> None:
    """Seed, then the three timed runs and (with --processes > 1) the scale-out run."""
    await seed(dsn, args.tickers, args.years)
    store = LocalObjectStore(root, fsync=False)
    runs = [
        ("first run (states NULL), 1 process", 1),
        ("second run (same D), 1 process", 1),
        ("third run (same D), EVALUATION_PROCESSES=2", 2),
    ]
    for label, processes in runs:
        settings = dataclasses.replace(settings, evaluation_processes=processes)
        cpu = _cpu()
        summary = await run_evaluation(settings, dsn, as_of=AS_OF, store=store)
        cpu = _cpu() - cpu
        busy = summary.read_seconds + summary.compute_seconds + summary.write_seconds
        print(summary.summary_line())
        print(
            f"{label}: {summary.seconds:.1f} s, {summary.entities / summary.seconds:.0f} "
            f"tickers/s; of the per-entity time {100 * summary.read_seconds / busy:.0f}% "
            f"reading Parquet, {100 * summary.compute_seconds / busy:.0f}% computing, "
            f"{100 * summary.write_seconds / busy:.0f}% writing Postgres "
            f"(1,000 tickers ~ {1000 * summary.seconds / max(summary.entities, 1):.0f} s)"
        )
        print(
            f"  evaluator CPU {cpu:.1f} s (incl. workers) for {summary.seconds:.1f} s wall "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    if args.processes > 1:
        await parallel_run(dsn, root, args.processes)


if __name__ == "__main__":
    asyncio.run(main())
