"""Backfill throughput: N tickers × 10 years through the fake DoltHub with per-request latency.

    .venv/bin/python bench/backfill.py [--tickers 100] [--latency-ms 100] [--rps 50] [--workers 8]

Uses a scratch database on TEST_DATABASE_URL / DATABASE_URL (else the embedded server), dropped
afterwards, and a temporary local object store. Prints wall time against the lower bound set by
the pacer (requests ÷ rps) or by latency (requests × latency ÷ requests in flight), whichever is
larger, and the rows written per second. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database, server_dsn
from ingest.dolthub.client import DoltHubClient
from ingest.jobs.backfill import run_backfill
from ingest.progress import Progress
from services.db import create_pool
from services.settings import Settings
from services.storage.local import LocalObjectStore

TODAY = date(2026, 11, 28)  # the fake's data ends 2026-11-27
# Each worker fetches up to 4 year-windows (or 4 earnings windows) concurrently.
IN_FLIGHT_PER_WORKER = 4


FAKE_SCRIPT = """
import sys
from tests.fakes import dolthub_server
fake = dolthub_server.FakeDoltHub().start()
fake.switches.latency_ms = float(sys.argv[1])
print(fake.url, flush=True)
sys.stdin.read()
"""


async def start_fake(latency_ms: float) -> tuple[asyncio.subprocess.Process, str]:
    """The fake DoltHub in its own process, so its CPU does not compete for our GIL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FAKE_SCRIPT,
        str(latency_ms),
        cwd=str(Path(__file__).resolve().parent.parent),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    url = (await process.stdout.readline()).decode().strip()
    return process, url


async def bench(args: argparse.Namespace) -> None:
    fake, url = await start_fake(args.latency_ms)
    tickers = [f"S{i:04d}" for i in range(args.tickers)]
    try:
        async with scratch_database(server_dsn()) as dsn:
            pool = await create_pool(dsn, max_size=args.workers + 2)
            await pool.execute(
                "INSERT INTO backfill_queue (ticker) SELECT unnest($1::text[])", tickers
            )
            settings = Settings.from_env({"DOLTHUB_API_URL": url, "BACKFILL_YEARS": "10"})
            with tempfile.TemporaryDirectory() as tmp:
                store = LocalObjectStore(Path(tmp), fsync=not args.no_fsync)
                client = DoltHubClient(url, rps=args.rps, timeout=30, max_retries=3)
                progress = Progress("backfill", interactive=False, log_interval=1e9)
                wall, cpu = time.perf_counter(), time.process_time()
                await run_backfill(
                    settings, pool, client, store, progress, workers=args.workers, today=TODAY
                )
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                summary = progress.summary_line()
                await client.aclose()
                requests = client.stats.requests
            statuses = await pool.fetch("SELECT status, count(*) FROM backfill_queue GROUP BY 1")
            await pool.close()
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        await fake.wait()
    print(summary)
    report(args, progress, wall, cpu, requests, {r[0]: r[1] for r in statuses})


def report(
    args: argparse.Namespace,
    progress: Progress,
    wall: float,
    cpu: float,
    requests: int,
    statuses: dict[str, int],
) -> None:
    latency = args.latency_ms / 1000
    in_flight = args.workers * IN_FLIGHT_PER_WORKER
    pacer_bound = requests / args.rps
    latency_bound = requests * latency / in_flight
    bound = max(pacer_bound, latency_bound)
    rows = sum(progress.counts[k] for k in ("bars written", "quarters written", "splits written"))
    print(f"jobs by status: {statuses}")
    print(
        f"{args.tickers} tickers × 10 years, {requests} requests, latency {args.latency_ms:.0f} ms,"
        f" pacer {args.rps:g} req/s, {args.workers} workers (≤{in_flight} requests in flight)"
    )
    print(
        f"wall {wall:.1f} s; lower bound {bound:.1f} s "
        f"(pacer {pacer_bound:.1f} s, latency {latency_bound:.1f} s) → {wall / bound:.2f}× bound"
    )
    print(
        f"{rows} rows written → {rows / wall:,.0f} rows/s; "
        f"{requests / wall:.1f} requests/s; CPU {cpu:.1f} s ({cpu / wall:.0%} of wall)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rps", type=float, default=50.0, help="DOLTHUB_RPS for the run")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync on object writes")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
