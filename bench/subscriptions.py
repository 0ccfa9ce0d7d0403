"""Alert delivery latency: 1,000 WebSocket subscribers on one server process.

    .venv/bin/python bench/subscriptions.py [--subscribers 1000] [--users 100] [--rounds 5]
                                            [--burst 100] [--no-deflate] [--server-deflate]

Starts `python server.py` on a scratch database (TEST_DATABASE_URL / DATABASE_URL, else the
embedded server; dropped afterwards), opens the subscribers (spread evenly over the users),
then commits `--rounds` bursts of `--burst` alerts, each burst one transaction with a
pg_notify per alert, as the evaluator writes them. Prints delivery latency after commit
(p50/p99/max over every delivery), lost or duplicated deliveries, the server's RSS and its
CPU time per delivery (user/system; steadier than latency on a shared machine). Clients offer
permessage-deflate as browsers do; the server accepts it only with `--server-deflate`
(WEBSOCKET_COMPRESSION=1), so comparing the two shows what compression costs.
Target: p99 < 250 ms. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database, server_dsn
from services.auth.tokens import issue_token
from tests.fixtures.app import TEST_JWT_SECRET
from tests.fixtures.ws import (
    ServerProcess,
    WsClient,
    insert_alerts,
    make_entity,
    make_user,
    server_env,
    wait_for_subscribers,
)

CONNECT_BATCH = 100
ROUND_TIMEOUT_SECONDS = 30.0


class Subscribers:
    """Open graphql-transport-ws clients and every (alert id, receive time) they got."""

    def __init__(self, deflate: bool) -> None:
        self.deflate = deflate
        self.received: list[tuple[str, float]] = []
        self.stack = contextlib.AsyncExitStack()
        self.tasks: list[asyncio.Task[None]] = []
        self.target = 0
        self.reached = asyncio.Event()

    async def open(self, url: str, token: str) -> None:
        options = {} if self.deflate else {"compression": None}
        client = await self.stack.enter_async_context(WsClient.connect(url, **options))
        ack = await client.init(token)
        assert ack["type"] == "connection_ack", ack
        await client.subscribe("1", fields="id")
        self.tasks.append(asyncio.create_task(self._read(client)))

    async def _read(self, client: WsClient) -> None:
        received = self.received
        with contextlib.suppress(Exception):
            async for raw in client.ws:
                received.append((str(raw), time.monotonic()))  # parse later, off the clock
                if len(received) >= self.target:
                    self.reached.set()

    async def wait_for(self, count: int, seconds: float) -> None:
        """Until `count` messages arrived in all (or `seconds` passed)."""
        self.target = count
        self.reached = asyncio.Event()
        if len(self.received) >= count:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reached.wait(), seconds)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.stack.aclose()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    async with scratch_database(server_dsn()) as dsn:
        await run_on(args, dsn)


async def run_on(args: argparse.Namespace, dsn: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mc-bench-subs-"))
    # One process holds every subscriber: the per-user socket cap must not refuse them.
    extra = {"WS_MAX_CONNECTIONS_PER_USER": str(args.subscribers)}
    if args.server_deflate:
        extra["WEBSOCKET_COMPRESSION"] = "1"
    process = ServerProcess(server_env(dsn, workdir / "data", **extra), workdir / "server.log")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert pool is not None
    subscribers = Subscribers(deflate=not args.no_deflate)
    try:
        process.wait_ready(60)
        rss_idle = process.rss_bytes()
        users = [await make_user(pool) for _ in range(args.users)]
        entities = [await make_entity(pool) for _ in range(10)]
        tokens = [issue_token(TEST_JWT_SECRET, u) for u in users]
        started = time.monotonic()
        for first in range(0, args.subscribers, CONNECT_BATCH):
            batch = range(first, min(first + CONNECT_BATCH, args.subscribers))
            await asyncio.gather(
                *(subscribers.open(process.ws_url, tokens[i % args.users]) for i in batch)
            )
        await wait_for_subscribers(process, args.subscribers, seconds=60)
        print(
            f"{args.subscribers} subscribers over {args.users} users connected in "
            f"{time.monotonic() - started:.1f}s; server RSS {rss_idle / 2**20:.0f} MB idle, "
            f"{process.rss_bytes() / 2**20:.0f} MB with subscribers"
        )
        per_user = args.subscribers // args.users
        committed: dict[str, float] = {}
        cpu_before = cpu_seconds(process.pid)
        for round_no in range(args.rounds):
            owners = [
                (users[i % args.users], entities[i % len(entities)]) for i in range(args.burst)
            ]
            ids = await insert_alerts(pool, owners)
            commit_time = time.monotonic()
            committed.update((str(i), commit_time) for i in ids)
            expected = len(committed) * per_user
            await subscribers.wait_for(expected, ROUND_TIMEOUT_SECONDS)
            print(f"round {round_no + 1}: {len(subscribers.received)}/{expected} deliveries")
            await asyncio.sleep(0.2)
        cpu_after = cpu_seconds(process.pid)
        user, system = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
        report(subscribers.received, committed, per_user)
        deliveries = len(committed) * per_user
        print(
            f"server CPU {user + system:.2f}s (user {user:.2f}s, system {system:.2f}s) for "
            f"{deliveries} deliveries: {(user + system) / deliveries * 1e6:.0f} µs per delivery"
        )
        print(f"server RSS after {args.rounds} bursts: {process.rss_bytes() / 2**20:.0f} MB")
    finally:
        await subscribers.close()
        process.stop()
        await pool.close()


def report(received: list[tuple[str, float]], committed: dict[str, float], per_user: int) -> None:
    latencies = []
    counts: Counter[str] = Counter()
    for raw, at in received:
        message = json.loads(raw)
        if message.get("type") != "next":
            continue
        alert_id = message["payload"]["data"]["alertCreated"]["id"]
        counts[alert_id] += 1
        latencies.append((at - committed[alert_id]) * 1000)
    expected = len(committed) * per_user
    missing = sum(max(0, per_user - counts[i]) for i in committed)
    duplicated = sum(max(0, counts[i] - per_user) for i in committed)
    print(
        f"deliveries {len(latencies)}/{expected} (missing {missing}, duplicated {duplicated}); "
        f"latency after commit p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms "
        f"(target p99 < 250 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=100, help="alerts per committed burst")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do; it costs server memory)",
    )
    parser.add_argument(
        "--server-deflate",
        action="store_true",
        help="the server accepts permessage-deflate (WEBSOCKET_COMPRESSION=1; off by default)",
    )
    args = parser.parse_args()
    if args.subscribers % args.users:
        parser.error("--subscribers must be a multiple of --users")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
