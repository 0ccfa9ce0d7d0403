"""Benchmark: one user's cached watchlist alone vs while other users add and remove stocks.

Usage: python bench/cache_scopes.py [--seconds 10] [--clients 8] [--rate 50] [--users 200]
                                    [--server-root DIR]

A scratch database on TEST_DATABASE_URL / DATABASE_URL (else the embedded server) is served
by `python server.py --demo` (one worker; the demo data set, its user watching the demo
stocks). `wrk` asks the demo user's watchlist for --seconds, first alone, then while --users
other users run addStock/removeStock on the demo stocks (the demo user's included) at --rate
mutations per second and --evaluations signal commits per second land on stocks it does not
show. Twice: the watchlist without watcherCount, and with it (which other
users' adds and removes of a shown stock must invalidate). Prints req/s, p99 and the
demo user's hit ratio (mc_response_cache_total; mutations are not counted there) per phase.
--server-root serves another checkout (e.g. an older commit, for comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._budget import UNLIMITED_BUDGET
from bench._scratch import scratch_database, server_dsn
from bench.watchlist_vs_postgraphile import (
    SECRET,
    Server,
    free_port,
    load_wrk,
    wait_ready,
)
from ingest.demo.stocks import DEMO_STOCKS
from services.auth.tokens import DEMO_USER_EMAIL, DEMO_USER_ID, issue_token
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WATCHLIST = """{ watchlist { count items { addedAt alertsEnabled valuationState trendState
  fundamentalsState lastAlertAt lastEvaluatedAt
  stock { ticker name dataStatus signal { asOf close valuationRegime }
          backfill { status } } } } }"""
WITH_COUNTS = WATCHLIST.replace("stock { ticker name", "stock { ticker name watcherCount")


@dataclass
class Phase:
    query: str
    mutations: bool
    rps: float
    p99_ms: float
    hits: float
    misses: float
    mutations_per_s: float

    @property
    def hit_ratio(self) -> float:
        return self.hits / max(1.0, self.hits + self.misses)


def token(settings: Settings, sub: uuid.UUID, email: str | None = None) -> str:
    return issue_token(
        settings.jwt_secret or "",
        sub,
        email=email,
        ttl_seconds=3600,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def start_server(dsn: str, port: int, root: Path, data_dir: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": SECRET,
        "APP_ENV": "development",
        **UNLIMITED_BUDGET,
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": data_dir,
    }
    command = [sys.executable, "server.py", "--demo", "--port", str(port)]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL)


async def cache_counts(http: httpx.AsyncClient, base: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families((await http.get(f"{base}/metrics")).text):
        for sample in family.samples:
            if sample.name == "mc_response_cache_total":
                counts[sample.labels["result"]] = sample.value
    return counts


async def mutate(
    url: str,
    tokens: list[str],
    watching: dict[int, set[str]],
    tickers: list[str],
    rate: float,
    stop: asyncio.Event,
) -> int:
    """addStock/removeStock by random other users at `rate` per second; returns how many.

    Four senders, each with its own users (so one user's mutations stay in order) and a
    quarter of the rate: a mutation takes tens of milliseconds while the server is loaded.
    """
    senders = 4

    async def send(lane: int, http: httpx.AsyncClient) -> int:
        rng = random.Random(lane)
        mine = [i for i in range(len(tokens)) if i % senders == lane]
        done = 0
        started = time.perf_counter()
        while not stop.is_set():
            user = rng.choice(mine)
            ticker = rng.choice(tickers)
            if ticker in watching[user]:
                query = f'mutation {{ removeStock(ticker: "{ticker}") }}'
                watching[user].discard(ticker)
            else:
                query = f'mutation {{ addStock(ticker: "{ticker}") {{ addedAt }} }}'
                watching[user].add(ticker)
            headers = {"authorization": f"Bearer {tokens[user]}"}
            response = await http.post(url, json={"query": query}, headers=headers)
            body = response.json()
            if "errors" in body:
                raise SystemExit(f"mutation failed: {body['errors']}")
            done += 1
            delay = started + done * senders / rate - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        return done

    async with httpx.AsyncClient(timeout=10) as http:
        return sum(await asyncio.gather(*(send(lane, http) for lane in range(senders))))


# An evaluation's commit of one stock, reduced to what the cache sees: its signal row changes.
EVALUATE_SQL = """
UPDATE entity_signals s SET computed_at = clock_timestamp()
WHERE s.entity_id = $1 AND s.as_of = (SELECT max(as_of) FROM entity_signals WHERE entity_id = $1)
"""
UNSHOWN_SQL = """
SELECT DISTINCT s.entity_id FROM entity_signals s
WHERE s.entity_id NOT IN (SELECT entity_id FROM watchlists WHERE user_id = $1)
"""


async def evaluate(dsn: str, rate: float, stop: asyncio.Event) -> int:
    """Signal commits of stocks the demo user does not watch, at `rate` per second."""
    conn = await asyncpg.connect(dsn)
    try:
        unshown = [row["entity_id"] for row in await conn.fetch(UNSHOWN_SQL, DEMO_USER_ID)]
        if not unshown:
            return 0
        done = 0
        started = time.perf_counter()
        while not stop.is_set():
            await conn.execute(EVALUATE_SQL, unshown[done % len(unshown)])
            done += 1
            delay = started + done / rate - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        return done
    finally:
        await conn.close()


async def phase(
    server: Server,
    http: httpx.AsyncClient,
    base: str,
    args: argparse.Namespace,
    dsn: str,
    others: list[str] | None,
    watching: dict[int, set[str]],
    tickers: list[str],
) -> Phase:
    before = await cache_counts(http, base)
    stop = asyncio.Event()
    writers = (
        [
            asyncio.create_task(mutate(server.url, others, watching, tickers, args.rate, stop)),
            asyncio.create_task(evaluate(dsn, args.evaluations, stop)),
        ]
        if others
        else []
    )
    started = time.perf_counter()
    database = dsn.rsplit("/", 1)[-1].split("?")[0]
    result = await load_wrk(server, args.clients, args.seconds, database)
    stop.set()
    mutations = (await writers[0]) if writers else 0
    for writer in writers[1:]:
        await writer
    elapsed = time.perf_counter() - started
    after = await cache_counts(http, base)
    return Phase(
        query="with watcherCount" if "watcherCount" in server.payload["query"] else "plain",
        mutations=bool(others),
        rps=result.rps,
        p99_ms=(result.quantiles or {}).get(0.99, float("nan")),
        hits=after.get("hit", 0) - before.get("hit", 0),
        misses=after.get("miss", 0) - before.get("miss", 0),
        mutations_per_s=mutations / elapsed,
    )


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env({"JWT_SECRET": SECRET, "APP_ENV": "development"})
    demo = token(settings, DEMO_USER_ID, DEMO_USER_EMAIL)
    others = [token(settings, uuid.uuid4()) for _ in range(args.users)]
    watching: dict[int, set[str]] = {i: set() for i in range(len(others))}
    tickers = [stock.ticker for stock in DEMO_STOCKS]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with scratch_database(server_dsn(), "mc_bench_cache", migrated=False) as dsn:
        with tempfile.TemporaryDirectory() as data_dir:
            process = start_server(dsn, port, Path(args.server_root), data_dir)
            try:
                phases: list[Phase] = []
                async with httpx.AsyncClient(timeout=30) as http:
                    for query in (WATCHLIST, WITH_COUNTS):
                        server = Server(
                            name="ours",
                            process=process,
                            url=f"{base}/graphql",
                            payload={"query": query},
                            headers={"authorization": f"Bearer {demo}"},
                        )
                        await wait_ready(server)
                        for with_others in (None, others):
                            phases.append(
                                await phase(
                                    server,
                                    http,
                                    base,
                                    args,
                                    dsn,
                                    with_others,
                                    watching,
                                    tickers,
                                )
                            )
            finally:
                process.terminate()
                process.wait(30)
    print(f"server: {args.server_root}; wrk {args.clients} connections, {args.seconds:.0f} s")
    print(f"{'query':<18} {'others':>12} {'req/s':>8} {'p99 ms':>7} {'hit ratio':>10}")
    for p in phases:
        others_label = f"{p.mutations_per_s:.0f} mut/s" if p.mutations else "quiet"
        print(
            f"{p.query:<18} {others_label:>12} {p.rps:>8.0f} {p.p99_ms:>7.1f} "
            f"{100 * p.hit_ratio:>9.2f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50, help="mutations per second")
    parser.add_argument("--users", type=int, default=200, help="users doing the mutations")
    parser.add_argument(
        "--evaluations", type=float, default=10, help="signal commits/s of stocks not shown"
    )
    parser.add_argument("--server-root", default=str(ROOT), help="the checkout to serve")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
