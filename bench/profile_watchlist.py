"""Profile: where the server's CPU goes for the 50-item `watchlist` query.

Usage: python bench/profile_watchlist.py [--requests 300] [--items 50] [--top 25] [--cached]
The same scratch database and query as bench/watchlist_vs_postgraphile.py, the real app
in-process (response cache off, or warm with --cached), requests sent one at a time through
httpx's ASGI transport. Prints CPU ms per request without the profiler, then a cProfile run's
top functions by own time and by cumulative time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import pstats
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._budget import UNLIMITED_BUDGET
from bench._scratch import scratch_database, server_dsn
from bench.watchlist_vs_postgraphile import OUR_QUERY, SECRET, prepare_database
from services.auth.tokens import issue_token
from services.settings import Settings
from web.app import create_app


async def _requests(http: httpx.AsyncClient, count: int, headers: dict[str, str]) -> None:
    for _ in range(count):
        response = await http.post("/graphql", json={"query": OUR_QUERY}, headers=headers)
        if response.status_code != 200 or "errors" in response.json():
            raise SystemExit(f"unexpected answer: {response.status_code} {response.text[:300]}")


async def run(args: argparse.Namespace) -> None:
    async with scratch_database(server_dsn(), "mc_bench_profile", migrated=False) as dsn:
        user = await prepare_database(dsn, args.items)
        settings = dataclasses.replace(
            Settings.from_env(
                {"APP_ENV": "development", "LOG_LEVEL": "WARNING", **UNLIMITED_BUDGET}
            ),
            jwt_secret=SECRET,
            response_cache_mb=64 if args.cached else 0,
        )
        app = create_app(settings, database_url=dsn)
        headers = {"authorization": f"Bearer {issue_token(SECRET, user, ttl_seconds=3600)}"}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                await _requests(http, 30, headers)  # warm-up: plans, prepared statements
                started = time.process_time()
                await _requests(http, args.requests, headers)
                plain_ms = (time.process_time() - started) * 1000 / args.requests
                profiler = cProfile.Profile()
                profiler.enable()
                await _requests(http, args.requests, headers)
                profiler.disable()
    print(
        f"{args.items} items, {args.requests} requests: {plain_ms:.2f} CPU ms/request "
        "(client and server in one process; the httpx client is part of it)"
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats(args.top)
        print(f"--- top {args.top} by {order} ---")
        print(out.getvalue().split("\n\n", 1)[-1].strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cached", action="store_true", help="response cache on (warm)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
