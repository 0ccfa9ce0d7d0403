"""Benchmark: `run_evaluation` over N tickers x 10+ years, month objects vs history objects.

Usage: python bench/evaluate.py [--tickers 1000] [--years 12] [--store DIR] [--processes 2]
                                [--s3-tickers 200] [--latency-ms 20]
Generation (not timed) writes synthetic prices + quarterly fundamentals (+ a 2-for-1 split
for every 10th ticker) into a LocalObjectStore (a temporary one, or --store DIR, reused when
it already holds them). A scratch database is created on TEST_DATABASE_URL / DATABASE_URL
(else the embedded server), migrated, filled with one entity + one watcher per ticker, and
dropped at the end. Side by side in one run, on the same data and date:
- local store: the month/quarter objects (DERIVED_HISTORY off, the baseline), the one-time
  build of the history objects, then the history objects; tickers/s and object requests
  per ticker (target: 1,000 tickers x 10 years in < 10 s with one process);
- with --s3-tickers N > 0: the first N tickers copied to moto's S3 server, every request
  delayed by --latency-ms in a botocore before-send hook that also counts them, the same
  three steps; GETs and LISTs per ticker (target: <= 2 GETs once history objects exist).
With --processes N it ends with N evaluator processes at once on a fresh run of the same
date (the scale-out path: they split the entities through the claims table).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import random
import resource
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database
from ingest.evaluation.run import EvaluationSummary, run_evaluation
from services.db import create_pool, resolve_database_url
from services.market_data_writes import rebuild_history
from services.settings import Settings
from services.storage.keys import fundamentals_key, price_key, splits_key
from services.storage.local import LocalObjectStore
from services.storage.object_store import ObjectStore
from services.storage.parquet import FUNDAMENTALS_SCHEMA, PRICE_SCHEMA, SPLITS_SCHEMA, encode_rows
from services.storage.s3 import S3ObjectStore

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


class CountingLocalStore(LocalObjectStore):
    """The local store, counting object reads (one per key) and listings."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.gets = self.lists = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        self.gets += len(keys)
        return await super().get_many(keys)

    async def list(self, prefix: str = "") -> list[str]:
        self.lists += 1
        return await super().list(prefix)


class S3Requests:
    """A botocore before-send hook: counts GET/LIST/PUT requests and sleeps `latency` first."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.gets = self.lists = self.puts = 0

    def __call__(self, request: Any, **_: Any) -> None:
        if request.method == "GET":
            if "list-type=" in request.url:
                self.lists += 1
            else:
                self.gets += 1
        elif request.method == "PUT":
            self.puts += 1
        time.sleep(self.latency)  # runs on the store's request thread, like network latency

    def reset(self) -> None:
        self.gets = self.lists = self.puts = 0


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database (same machine only).

    Backends exit when the run's pool closes, so a thread samples /proc while the run goes
    and keeps each backend's last reading; 0 when the server is elsewhere.
    """

    def __init__(self, database: str) -> None:
        self.marker = f" {database} ".encode()
        self.seen: dict[int, float] = {}
        self.done = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if self.marker not in handle.read().replace(b"\0", b" ") + b" ":
                        continue
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.seen[pid] = (int(fields[11]) + int(fields[12])) / self.tick

    def _loop(self) -> None:
        while not self.done.wait(0.2):
            self._sample()

    def __enter__(self) -> BackendCpu:
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def evaluate_once(
    settings: Settings, dsn: str, store: ObjectStore, tickers: list[str] | None, history: bool
) -> EvaluationSummary:
    settings = dataclasses.replace(settings, evaluation_processes=1, derived_history=history)
    cpu = _own_cpu()
    with BackendCpu(dsn.rsplit("/", 1)[1]) as backends:
        summary = await run_evaluation(settings, dsn, as_of=AS_OF, store=store, tickers=tickers)
    CPU_SECONDS[id(summary)] = (_own_cpu() - cpu, backends.seconds)
    return summary


# id(summary) -> (evaluator CPU s, PostgreSQL backend CPU s) of that run.
CPU_SECONDS: dict[int, tuple[float, float]] = {}


async def build_histories(dsn: str, store: ObjectStore, tickers: list[str]) -> float:
    """The one-time build of every history object (what the first evaluation does); seconds."""
    pool = await create_pool(dsn, min_size=1, max_size=5)
    gate = asyncio.Semaphore(4)

    async def one(ticker: str) -> None:
        async with gate:
            await rebuild_history(pool, store, ticker)

    began = time.perf_counter()
    try:
        await asyncio.gather(*(one(t) for t in tickers))
    finally:
        await pool.close()
    return time.perf_counter() - began


def report(label: str, summary: EvaluationSummary, gets: int, lists: int) -> float:
    """Print one run's line; returns its tickers/s."""
    rate = summary.entities / summary.seconds
    busy = summary.read_seconds + summary.compute_seconds + summary.write_seconds or 1.0
    entities = max(summary.entities, 1)
    print(
        f"{label}: {summary.entities} tickers in {summary.seconds:.1f} s, {rate:.0f} tickers/s, "
        f"{gets / entities:.1f} GETs + {lists / entities:.1f} LISTs per ticker; per-entity time "
        f"{100 * summary.read_seconds / busy:.0f}% reading, "
        f"{100 * summary.compute_seconds / busy:.0f}% computing, "
        f"{100 * summary.write_seconds / busy:.0f}% writing Postgres "
        f"(failures {summary.failures}, load average {os.getloadavg()[0]:.1f})"
    )
    own, backends = CPU_SECONDS.get(id(summary), (0.0, 0.0))
    print(
        f"  CPU per 1,000 tickers: evaluator {1000 * own / entities:.1f} s, "
        f"its PostgreSQL backends {1000 * backends / entities:.1f} s "
        f"(the work itself, whatever else loads the machine)"
    )
    return rate


async def local_runs(settings: Settings, dsn: str, root: Path, tickers: int) -> None:
    store = CountingLocalStore(root)
    names = [f"T{n:04d}" for n in range(tickers)]
    for key in await store.list("history/"):  # a reused store starts without history objects
        await store.delete(key)
    await evaluate_once(settings, dsn, store, None, history=False)  # sets the states (NULL)
    store.gets = store.lists = 0
    baseline = await evaluate_once(settings, dsn, store, None, history=False)
    old = report("local, month objects (baseline)", baseline, store.gets, store.lists)
    seconds = await build_histories(dsn, store, names)
    print(f"local, one-time build of {tickers} history objects: {seconds:.1f} s")
    store.gets = store.lists = 0
    derived = await evaluate_once(settings, dsn, store, None, history=True)
    new = report("local, history objects", derived, store.gets, store.lists)
    print(
        f"local: x{new / old:.1f} tickers/s; 1,000 tickers ~ "
        f"{1000 * derived.seconds / max(derived.entities, 1):.1f} s (target < 10 s)"
    )


async def s3_runs(
    settings: Settings, dsn: str, root: Path, tickers: int, latency: float, endpoint: str
) -> None:
    names = [f"T{n:04d}" for n in range(tickers)]
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = S3ObjectStore(bucket, endpoint_url=endpoint, region="us-east-1", max_concurrency=32)
    local = LocalObjectStore(root, fsync=False)
    try:
        keys = [
            k
            for name in names
            for p in ("prices", "fundamentals", "splits")
            for k in await local.list(f"{p}/v1/{name}/")
        ]
        gate = asyncio.Semaphore(16)

        async def copy(key: str) -> None:
            async with gate:
                data = await local.get(key)
                assert data is not None
                await store.put(key, data)

        await asyncio.gather(*(copy(k) for k in keys))
        print(f"copied {len(keys)} objects of {tickers} tickers to moto (not timed)")
        hook = S3Requests(latency)
        store.client.meta.events.register("before-send.s3", hook)
        await evaluate_once(settings, dsn, store, names, history=False)  # a first run
        hook.reset()
        baseline = await evaluate_once(settings, dsn, store, names, history=False)
        label = f"S3 (moto, {1000 * latency:.0f} ms per request)"
        old = report(f"{label}, month objects (baseline)", baseline, hook.gets, hook.lists)
        hook.reset()
        seconds = await build_histories(dsn, store, names)
        print(
            f"{label}, one-time build of {tickers} history objects: {seconds:.1f} s, "
            f"{hook.gets / tickers:.1f} GETs + {hook.lists / tickers:.1f} LISTs + "
            f"{hook.puts / tickers:.1f} PUTs per ticker"
        )
        hook.reset()
        derived = await evaluate_once(settings, dsn, store, names, history=True)
        new = report(f"{label}, history objects", derived, hook.gets, hook.lists)
        print(f"S3: x{new / old:.1f} tickers/s")
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=1000)
    parser.add_argument("--years", type=int, default=12, help="years of generated history")
    parser.add_argument("--store", type=Path, help="generated-store directory to (re)use")
    parser.add_argument(
        "--processes", type=int, default=1, help="separate evaluator processes for a last run"
    )
    parser.add_argument("--s3-tickers", type=int, default=200, help="0 skips the S3 runs")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added per S3 request")
    args = parser.parse_args()
    tmp = None if args.store else tempfile.TemporaryDirectory(prefix="eval-bench-")
    root = args.store or Path(tmp.name)  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    generate(root, args.tickers, args.years)
    settings = Settings.from_env()
    server = os.environ.get("TEST_DATABASE_URL") or resolve_database_url(settings)
    try:
        async with scratch_database(server, "mc_bench_eval") as dsn:
            await seed(dsn, args.tickers, args.years)
            await local_runs(settings, dsn, root, args.tickers)
            if args.s3_tickers > 0:
                await with_moto(settings, dsn, root, args)
            if args.processes > 1:
                await parallel_run(dsn, root, args.processes)
    finally:
        if tmp is not None:
            tmp.cleanup()


async def with_moto(settings: Settings, dsn: str, root: Path, args: argparse.Namespace) -> None:
    """The S3 runs against moto's server in its own process (not competing for our GIL)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        await wait_for_port(port)
        tickers = min(args.s3_tickers, args.tickers)
        await s3_runs(settings, dsn, root, tickers, args.latency_ms / 1000, endpoint)
    finally:
        server.terminate()
        await server.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"moto did not start on port {port}")


if __name__ == "__main__":
    asyncio.run(main())
