"""Benchmark: the 50-item `watchlist` query over real HTTP (uvicorn in a child process).

Usage: python bench/watchlist_api.py [--clients 32] [--requests 3000] [--items 50]
A scratch database is created on TEST_DATABASE_URL / DATABASE_URL (else the embedded
server), migrated, filled with one user watching `--items` stocks (states, signals, alerts,
queued backfills, other watchers), and dropped at the end. Prints requests/s, p50/p99
latency and the server's RSS (targets: p99 < 50 ms, RSS < 200 MB on a 2-core box).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._budget import UNLIMITED_BUDGET
from bench._scratch import scratch_database
from migrations.runner import migrate
from services.auth.tokens import issue_token
from services.db import resolve_database_url
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
QUERY = """{ watchlist { count items {
    addedAt alertsEnabled valuationState trendState fundamentalsState
    valuationRegime trendPosition fundamentalDirection lastAlertAt lastEvaluatedAt
    stock { ticker name dataStatus hasPriceData watcherCount
            signal { asOf close valuationRegime valuationPercentile }
            backfill { status priority } } } } }"""

SERVE = """
import dataclasses, sys, uvicorn
from web.app import create_app
from services.settings import Settings
settings = dataclasses.replace(Settings.from_env(), jwt_secret=sys.argv[2])
uvicorn.run(create_app(settings, database_url=sys.argv[1]), host="127.0.0.1",
            port=int(sys.argv[3]), log_level="warning")
"""


async def seed(dsn: str, items: int) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        user = uuid.uuid4()
        others = [uuid.uuid4() for _ in range(5)]
        await conn.executemany(
            "INSERT INTO users (id) VALUES ($1)", [(u,) for u in [user, *others]]
        )
        tickers = [f"B{n:03d}" for n in range(items)]
        await conn.execute(
            "INSERT INTO entities (ticker, name, has_price_data, data_status) "
            "SELECT t, 'Company ' || t, n % 5 <> 0, "
            "CASE WHEN n % 5 = 0 THEN 'queued' ELSE 'ready' END "
            "FROM unnest($1::text[]) WITH ORDINALITY AS x(t, n)",
            tickers,
        )
        await conn.execute(
            "INSERT INTO watchlists (user_id, entity_id) SELECT u, e.id FROM entities e, "
            "unnest($1::uuid[]) AS u",
            [user, *others],
        )
        await conn.execute(
            "INSERT INTO user_entity_settings (user_id, entity_id, last_valuation_regime, "
            "last_trend_position, last_fundamental_direction, last_evaluated_at) "
            "SELECT $1, id, 'CHEAP', 'ABOVE_200DMA', 'IMPROVING', now() FROM entities",
            user,
        )
        await conn.execute(
            "INSERT INTO entity_signals (entity_id, as_of, close, trend_position, "
            "valuation_regime, fundamental_direction, valuation_percentile) "
            "SELECT id, d::date, 100, 'ABOVE_200DMA', 'CHEAP', 'IMPROVING', 12 FROM entities, "
            "generate_series('2025-01-01'::date, '2025-03-31', '1 day') AS d"
        )
        await conn.execute(
            "INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, "
            "headline, what_changed, why_it_matters, before_vs_now, what_didnt_change) "
            "SELECT $1, id, 'trend_break', d::date, 'BELOW_200DMA', 'h', 'w', 'y', 'b', 'n' "
            "FROM entities, generate_series('2025-01-01'::date, '2025-01-10', '1 day') AS d",
            user,
        )
        await conn.execute(
            "INSERT INTO backfill_queue (ticker) "
            "SELECT ticker FROM entities WHERE NOT has_price_data"
        )
        await conn.execute("ANALYZE")
        return user
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.post(url, json={"query": "{ health { ok } }"})
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise SystemExit("server did not start")


async def load(url: str, token: str, clients: int, total: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    remaining = iter(range(total))
    headers = {"authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        for _ in remaining:
            start = time.perf_counter()
            response = await http.post(url, json={"query": QUERY}, headers=headers)
            latencies.append(time.perf_counter() - start)
            body = response.json()
            if "errors" in body:
                raise SystemExit(f"query failed: {body['errors']}")

    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def start_server(dsn: str, port: int) -> subprocess.Popen[bytes]:
    """uvicorn serving the real app in a child process (so client and server don't share)."""
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, dsn, SECRET, str(port)],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(ROOT / ".data" / "bench"), **UNLIMITED_BUDGET},
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--items", type=int, default=50)
    args = parser.parse_args()
    server = os.environ.get("TEST_DATABASE_URL") or resolve_database_url(Settings.from_env())
    # Not migrated here: seed() migrates (bench/watchlist_vs_postgraphile.py reuses it).
    async with scratch_database(server, "bench_watchlist", migrated=False) as dsn:
        await bench(dsn, args)


async def bench(dsn: str, args: argparse.Namespace) -> None:
    """Seed, start the server, warm up, then time `args.requests` watchlist queries."""
    port = free_port()
    child = None
    try:
        user = await seed(dsn, args.items)
        child = start_server(dsn, port)
        url = f"http://127.0.0.1:{port}/graphql"
        await wait_ready(url)
        token = issue_token(SECRET, user)
        await load(url, token, args.clients, 200)  # warm-up
        seconds, latencies = await load(url, token, args.clients, args.requests)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        p50 = statistics.median(latencies)
        print(
            f"watchlist ({args.items} items), {args.clients} clients, {args.requests} requests: "
            f"{args.requests / seconds:.0f} req/s, p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, server RSS {rss_mb(child.pid):.0f} MB"
        )
    finally:
        if child is not None:
            child.terminate()
            child.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
