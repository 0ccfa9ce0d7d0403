"""Soak: two server processes under a mixed load, live subscribers, evaluations and webhooks.

    .venv/bin/python bench/soak.py [--duration 600] [--warmup 30] [--rate 100] [--users 200]
                                   [--subscribers 500] [--tickers 20] [--watch 5]
                                   [--eval-interval 60] [--flip 0.25] [--webhook-users 20]
                                   [--no-deflate]

On a scratch database (TEST_DATABASE_URL / DATABASE_URL, else the embedded server; dropped
afterwards) and a local object store: `--tickers` synthetic stocks with 11 years of prices and
quarterly fundamentals, `--users` users watching `--watch` of them each, `--webhook-users` of
them with a webhook endpoint on a loopback receiver. Two `python server.py` processes share the
database; `python -m ingest deliver --follow` runs beside them. Then, for --warmup + --duration
seconds:

- HTTP load from `wrk` (one wrk per operation, one thread per server process, each connection
  paced so that all offer at most --rate requests/s): ~70 % reads (`watchlist`, `alerts`),
  ~20 % mutations (`addStock`/`removeStock` pairs, `setStockAlerts`, `markAlertOpened`),
  ~10 % other queries (`stock` with signal and prices, `searchStocks`, `me` + `alertStats`),
  each user's own token;
- `--subscribers` WebSocket `alertCreated` subscribers over the users and both processes;
- every --eval-interval seconds, three new trading days of bars that move --flip of the stocks
  across their 200-day average (`python -m ingest import-csv`), then the real
  `python -m ingest evaluate`, so each run writes fresh alerts and their webhook deliveries.

Prints p50/p99, counts and errors per operation; the evaluations; RSS per server process
after the warm-up and at the end of the load (PASS when it grew < 10 %), each minute, and
the CPU each used; from the database, whether every alert written during the soak reached
every subscriber of its user exactly once, and every webhook delivery the receiver exactly
once (missing / duplicate counts, PASS/FAIL); and the warnings the processes logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database, server_dsn
from bench.delivery import RECEIVER, percentile
from bench.evaluate import AS_OF, seed, weekdays, write_ticker
from bench.subscriptions import cpu_seconds
from bench.watchlist_vs_postgraphile import _lua_string, wrk_figures
from services.auth.tokens import issue_token
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_prices
from tests.fixtures.app import TEST_JWT_SECRET
from tests.fixtures.ws import ServerProcess, WsClient, server_env, wait_for_subscribers

ROOT = Path(__file__).resolve().parent.parent
INGEST = (sys.executable, "-m", "ingest")
YEARS = 11
CONNECT_BATCH = 100
RSS_GROWTH_LIMIT = 0.10
DRAIN_SECONDS = 60.0
MAX_PAUSE_MS = 4500  # below uvicorn's keep-alive timeout (5 s)
# Closes far enough either side of any 200-day average the history can produce, so each
# evaluation flips every stock's trend (and usually its valuation zone too).
LOW, HIGH = 0.3, 2.5
DAYS_PER_STEP = 3  # the trend's confirmation days
LOG_LEVELS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")

WATCHLIST = """{ watchlist { count items { addedAt alertsEnabled valuationState trendState
  fundamentalsState valuationRegime trendPosition fundamentalDirection lastAlertAt
  stock { ticker name dataStatus watcherCount
          signal { asOf close sma200 valuationPercentile } } } } }"""
ALERTS = """{ alerts(first: 20) { totalCount pageInfo { hasNextPage endCursor }
  edges { cursor node { id type asOf headline whatChanged stock { ticker } openedAt } } } }"""
ADD = "mutation($t: String!) { addStock(ticker: $t) { addedAt stock { ticker } } }"
REMOVE = "mutation($t: String!) { removeStock(ticker: $t) }"
SET_ALERTS = """mutation($t: String!, $on: Boolean!) {
  setStockAlerts(ticker: $t, enabled: $on) { alertsEnabled } }"""
MARK_OPENED = "mutation($id: ID!) { markAlertOpened(id: $id) { id openedAt } }"
STOCK = """query($t: String!) { stock(ticker: $t) { ticker dataStatus watcherCount
  signal { asOf close sma200 trendPosition valuationRegime }
  prices(from: "2025-10-01") { date close sma200 } } }"""
SEARCH = "query($q: String!) { searchStocks(query: $q, limit: 10) { ticker dataStatus } }"
ACCOUNT = """{ me { id alertsEnabled alertTypes } alertStats { total opened openRate
  byType { type count } } recentAlertsCount }"""

# One wrk per operation; its threads (one per server process) replay a plan of prepared
# requests in a loop, count GraphQL errors and print them when wrk ends.
WRK_LUA = """
local ports = {@PORTS@}
local tokens = {@TOKENS@}
local plans = {@PLANS@}
local pause = @DELAY@
local created = 0
local threads = {}

function setup(thread)
  thread.addr = wrk.lookup("127.0.0.1", tostring(ports[created % #ports + 1]))[1]
  thread:set("slot", created)
  table.insert(threads, thread)
  created = created + 1
end

function init(args)
  requests, sent, failed, sample = {}, 0, 0, ""
  for i, item in ipairs(plans[slot % #plans + 1]) do
    requests[i] = wrk.format("POST", "/graphql", {
      ["content-type"] = "application/json",
      ["authorization"] = "Bearer " .. tokens[item[1]],
    }, item[2])
  end
end

function delay()
  return pause
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    failed = failed + 1
    if sample == "" then sample = string.sub(body, 1, 300) end
  end
end

function done(summary, latency, requests)
  local total, first = 0, ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("failed")
    if first == "" then first = thread:get("sample") end
  end
  io.write("GRAPHQL_ERRORS " .. total .. "\\n")
  if first ~= "" then io.write("ERROR_SAMPLE " .. string.gsub(first, "\\n", " ") .. "\\n") end
end
"""


@dataclass
class World:
    """What the seed made: users, their tokens and the tickers around them."""

    users: list[uuid.UUID]
    tokens: list[str]
    tickers: list[str]
    watched: list[list[str]]  # per user
    churn: list[str]  # per user: a ticker added and removed by the load
    opened: list[list[str]] = field(default_factory=list)  # per user: alert ids to mark opened


@dataclass
class Operation:
    name: str
    share: float
    connections: int  # split over the two wrk threads
    plan: Callable[[World, int], list[tuple[int, dict[str, Any]]]]  # (world, slot) → requests


def every_user(query: str) -> Callable[[World, int], list[tuple[int, dict[str, Any]]]]:
    def plan(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
        order = list(range(len(world.users)))
        half = len(order) // 2 * slot  # the two threads start at different users
        return [(u, {"query": query}) for u in order[half:] + order[:half]]

    return plan


def own_users(world: World, slot: int) -> list[int]:
    """The users one thread's mutations touch: the other thread never races it on them."""
    return [u for u in range(len(world.users)) if u % 2 == slot]


def add_remove(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
    # Every add is answered long before the same user's remove is sent (a whole pass apart).
    mine = own_users(world, slot)
    adds = [(u, {"query": ADD, "variables": {"t": world.churn[u]}}) for u in mine]
    return adds + [(u, {"query": REMOVE, "variables": {"t": world.churn[u]}}) for u in mine]


def set_alerts(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
    mine = own_users(world, slot)
    return [
        (u, {"query": SET_ALERTS, "variables": {"t": world.watched[u][0], "on": on}})
        for on in (False, True)
        for u in mine
    ]


def mark_opened(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
    mine = own_users(world, slot)
    return [
        (u, {"query": MARK_OPENED, "variables": {"id": alert}})
        for u in mine
        for alert in world.opened[u][:3]
    ]


def stock(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
    count = len(world.users)
    return [(u, {"query": STOCK, "variables": {"t": world.tickers[u % 7]}}) for u in range(count)]


def search(world: World, slot: int) -> list[tuple[int, dict[str, Any]]]:
    prefixes = ["T", "T0", "T00", "T001", "t0", "T0009", "XYZ"]
    count = len(world.users)
    return [(u, {"query": SEARCH, "variables": {"q": prefixes[u % 7]}}) for u in range(count)]


OPERATIONS = [
    Operation("watchlist", 0.40, 4, every_user(WATCHLIST)),
    Operation("alerts", 0.30, 4, every_user(ALERTS)),
    Operation("addStock/removeStock", 0.08, 2, add_remove),
    Operation("setStockAlerts", 0.06, 2, set_alerts),
    Operation("markAlertOpened", 0.06, 2, mark_opened),
    Operation("stock", 0.04, 2, stock),
    Operation("searchStocks", 0.03, 2, search),
    Operation("me+alertStats", 0.03, 2, every_user(ACCOUNT)),
]


def pause_ms(op: Operation, rate: float) -> float:
    """Between one response and a connection's next request, so `op` gets its share of rate."""
    return op.connections * 1000 / (rate * op.share)


def wrk_script(op: Operation, world: World, ports: list[int], rate: float) -> str:
    plans = []
    for slot in range(2):
        items = ", ".join(
            f"{{{u + 1}, {_lua_string(json.dumps(payload))}}}"
            for u, payload in op.plan(world, slot)
        )
        plans.append(f"{{{items}}}")
    pause = max(1, round(pause_ms(op, rate)))
    return (
        WRK_LUA.replace("@PORTS@", ", ".join(map(str, ports)))
        .replace("@TOKENS@", ", ".join(_lua_string(t) for t in world.tokens))
        .replace("@PLANS@", ", ".join(plans))
        .replace("@DELAY@", str(pause))
    )


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    p50: float
    p99: float
    http_errors: int
    graphql_errors: int
    sample: str


async def run_wrk(op: Operation, script: Path, port: int, seconds: float) -> LoadResult:
    command = ["wrk", "-t2", f"-c{op.connections}", f"-d{round(seconds)}s", "--latency"]
    command += ["--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}/graphql"]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output = (await process.communicate())[0].decode()
    figures = wrk_figures(output)
    if figures is None:
        raise SystemExit(f"unexpected wrk output for {op.name}:\n{output}")
    quantiles, total, elapsed, errors = figures
    graphql_errors, sample = 0, ""
    for line in output.splitlines():
        if line.startswith("GRAPHQL_ERRORS "):
            graphql_errors = int(line.split()[1])
        elif line.startswith("ERROR_SAMPLE "):
            sample = line[len("ERROR_SAMPLE ") :]
    return LoadResult(
        op.name, total, elapsed, quantiles[0.5], quantiles[0.99], errors, graphql_errors, sample
    )


class Subscriber:
    """One graphql-transport-ws connection subscribed to alertCreated for one user."""

    def __init__(self, user: int, server: int, deflate: bool) -> None:
        self.user = user
        self.server = server
        self.deflate = deflate
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []  # seconds from the alert's sent_at to receipt
        self.problems: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def open(self, stack: contextlib.AsyncExitStack, url: str, token: str) -> None:
        options = {} if self.deflate else {"compression": None}
        client = await stack.enter_async_context(WsClient.connect(url, **options))
        ack = await client.init(token)
        if ack["type"] != "connection_ack":
            raise SystemExit(f"subscriber refused: {ack}")
        await client.subscribe("1", fields="id createdAt")
        self.task = asyncio.create_task(self._read(client))

    async def _read(self, client: WsClient) -> None:
        try:
            async for raw in client.ws:
                message = json.loads(raw)
                payload = message.get("payload") or {}
                if message.get("type") != "next" or "errors" in payload:
                    self.problems.append(str(raw)[:200])
                    continue
                alert = payload["data"]["alertCreated"]
                self.counts[alert["id"]] += 1
                sent = datetime.fromisoformat(alert["createdAt"]).timestamp()
                self.latencies.append(time.time() - sent)
            self.problems.append(f"closed {client.ws.close_code} {client.ws.close_reason}")
        except Exception as exc:  # a dropped socket is a finding, not a crash of the bench
            self.problems.append(f"{type(exc).__name__}: {exc}")


class Market:
    """Appends trading days that push stocks across their 200-day average, and evaluates."""

    def __init__(self, workdir: Path, env: dict[str, str], tickers: list[str]) -> None:
        self.workdir = workdir
        self.env = env
        self.tickers = tickers
        self.base: dict[str, float] = {}
        self.high: set[str] = set()  # closing at HIGH × base, the others at LOW × base
        self.day = AS_OF
        self.steps = 0
        self.cursor = 0

    async def load_base(self, store: LocalObjectStore) -> None:
        start = AS_OF - timedelta(days=40)
        for ticker in self.tickers:
            prices = await read_prices(store, ticker, start, AS_OF, columns=("date", "close"))
            self.base[ticker] = prices.closes[-1]

    def next_tickers(self, count: int) -> list[str]:
        """`count` tickers, round-robin, so every stock flips in turn."""
        chosen = [self.tickers[(self.cursor + i) % len(self.tickers)] for i in range(count)]
        self.cursor = (self.cursor + count) % len(self.tickers)
        return chosen

    async def step(self, flipping: list[str]) -> tuple[str, date, float, float]:
        """Import the next days' bars, `flipping` moved to the other level, and evaluate them."""
        self.steps += 1
        self.high ^= set(flipping)
        days: list[date] = []
        while len(days) < DAYS_PER_STEP:
            self.day += timedelta(days=1)
            if self.day.weekday() < 5:
                days.append(self.day)
        folder = self.workdir / f"bars-{self.steps}"
        folder.mkdir()
        with (folder / "ohlcv.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["date", "act_symbol", "open", "high", "low", "close", "volume"])
            for ticker in self.tickers:
                level = HIGH if ticker in self.high else LOW
                close = round(self.base[ticker] * level, 4)
                for day in days:
                    writer.writerow([day, ticker, close, close * 1.01, close * 0.99, close, 1000])
        imported = await self.ingest("import-csv", str(folder))
        evaluated = await self.ingest("evaluate", "--as-of", self.day.isoformat())
        return evaluated[1], self.day, imported[0], evaluated[0]

    async def ingest(self, *args: str) -> tuple[float, str]:
        began = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *INGEST,
            *args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await process.communicate())[0].decode().strip()
        if process.returncode != 0:
            raise SystemExit(f"ingest {' '.join(args)} exited {process.returncode}:\n{output}")
        return time.monotonic() - began, output.splitlines()[-1] if output else ""


async def seed_world(dsn: str, args: argparse.Namespace, receiver_port: int) -> World:
    """Entities (bench/evaluate's seed), users with watchlists, tokens and webhook endpoints."""
    await seed(dsn, args.tickers, YEARS)
    tickers = [f"T{n:04d}" for n in range(args.tickers)]
    users = [uuid.uuid4() for _ in range(args.users)]
    watched = [
        [tickers[(u + k) % len(tickers)] for k in range(args.watch)] for u in range(len(users))
    ]
    churn = [tickers[(u + args.watch) % len(tickers)] for u in range(len(users))]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM users")  # bench/evaluate's one user who watches all
        await conn.execute(
            "INSERT INTO users (id, email_digest) SELECT u, 'off' FROM unnest($1::uuid[]) u", users
        )
        pairs = [(users[u], t) for u in range(len(users)) for t in watched[u]]
        await conn.execute(
            """WITH w AS (
                 INSERT INTO watchlists (user_id, entity_id)
                 SELECT p.u, e.id FROM unnest($1::uuid[], $2::text[]) AS p(u, t)
                 JOIN entities e ON e.ticker = p.t RETURNING user_id, entity_id)
               INSERT INTO user_entity_settings (user_id, entity_id)
               SELECT user_id, entity_id FROM w""",
            [u for u, _ in pairs],
            [t for _, t in pairs],
        )
        await conn.execute(
            "INSERT INTO webhook_endpoints (user_id, url, secret) "
            "SELECT u, format('http://127.0.0.1:%s/hook/%s', $2::int, i), $3 "
            "FROM unnest($1::uuid[]) WITH ORDINALITY AS x(u, i)",
            users[: args.webhook_users],
            receiver_port,
            "whsec_" + "a" * 43 + "=",
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    ttl = int(args.warmup + args.duration) + 3600  # a token expiring would end its subscription
    tokens = [issue_token(TEST_JWT_SECRET, u, ttl_seconds=ttl) for u in users]
    return World(users, tokens, tickers, watched, churn)


def generate_store(root: Path, tickers: int) -> None:
    days = weekdays(date(AS_OF.year - YEARS, AS_OF.month, AS_OF.day) + timedelta(days=1), AS_OF)
    for n in range(tickers):
        write_ticker(root, n, days)


async def alert_ids(dsn: str) -> dict[uuid.UUID, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id::text, user_id FROM alert_history ORDER BY sent_at")
    finally:
        await conn.close()
    found: dict[uuid.UUID, list[str]] = {}
    for row in rows:
        found.setdefault(row["user_id"], []).append(row["id"])
    return found


def rss_mb(servers: list[ServerProcess]) -> list[float]:
    return [server.rss_bytes() / 2**20 for server in servers]


@dataclass
class Watch:
    """Per server process: RSS every 10 s (MB), after the warm-up and at the end; CPU seconds."""

    samples: list[list[float]] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def sample(self, servers: list[ServerProcess]) -> None:
        self.samples.append(rss_mb(servers))


def cpu_total(servers: list[ServerProcess]) -> list[float]:
    return [sum(cpu_seconds(server.pid)) for server in servers]


async def run(args: argparse.Namespace) -> None:
    async with scratch_database(server_dsn(), "mc_bench_soak") as dsn:
        workdir = Path(tempfile.mkdtemp(prefix="mc-soak-"))
        try:
            await soak(args, dsn, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


async def soak(args: argparse.Namespace, dsn: str, workdir: Path) -> None:
    began = time.monotonic()
    store_root = workdir / "objects"
    await asyncio.to_thread(generate_store, store_root, args.tickers)
    received_path = workdir / "webhooks.txt"
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, str(received_path), stdout=asyncio.subprocess.PIPE
    )
    assert receiver.stdout is not None
    receiver_port = int((await receiver.stdout.readline()).decode())
    world = await seed_world(dsn, args, receiver_port)
    env = server_env(dsn, workdir / "data", OBJECT_STORE_URL=f"file://{store_root}")
    market = Market(workdir, env, world.tickers)
    await market.load_base(LocalObjectStore(store_root, fsync=False))
    await market.step([])  # every stock LOW: the first evaluation sets states silently
    await market.step(world.tickers)  # every stock HIGH: alerts for markAlertOpened
    before = await alert_ids(dsn)
    world.opened = [before.get(u, []) for u in world.users]
    pre_soak = {alert for ids in before.values() for alert in ids}
    print(
        f"seeded {args.tickers} tickers x {YEARS} years, {args.users} users watching "
        f"{args.watch} each, {args.webhook_users} with a webhook, {len(pre_soak)} earlier "
        f"alerts, in {time.monotonic() - began:.0f} s"
    )

    servers = [
        ServerProcess(env | {"DATA_DIR": str(workdir / f"server{i}")}, workdir / f"server{i}.log")
        for i in range(2)
    ]
    deliver_log = (workdir / "deliver.log").open("wb")
    deliverer = await asyncio.create_subprocess_exec(
        *INGEST, "deliver", "--follow", cwd=ROOT, env=env, stdout=deliver_log, stderr=deliver_log
    )
    subscribers = [
        Subscriber(j % args.users, (j // args.users) % 2, not args.no_deflate)
        for j in range(args.subscribers)
    ]
    stack = contextlib.AsyncExitStack()
    try:
        for server in servers:
            await asyncio.to_thread(server.wait_ready, 60)
        rss_idle = rss_mb(servers)
        for first in range(0, len(subscribers), CONNECT_BATCH):
            await asyncio.gather(
                *(
                    s.open(stack, servers[s.server].ws_url, world.tokens[s.user])
                    for s in subscribers[first : first + CONNECT_BATCH]
                )
            )
        for index, server in enumerate(servers):
            count = sum(1 for s in subscribers if s.server == index)
            await wait_for_subscribers(server, count, seconds=60)
        print(
            f"2 server processes, {len(subscribers)} subscribers connected; RSS idle "
            f"{', '.join(f'{mb:.0f}' for mb in rss_idle)} MB, with subscribers "
            f"{', '.join(f'{mb:.0f}' for mb in rss_mb(servers))} MB; load {args.rate:g} req/s "
            f"offered for {args.warmup:g} s warm-up + {args.duration:g} s "
            f"(load average {os.getloadavg()[0]:.1f}, box shared with other work)"
        )
        results, evaluations, watch = await drive(args, world, servers, market, workdir)
        drained = await drain(dsn, pre_soak, subscribers, world)
        await asyncio.sleep(2.0)  # a late duplicate would show up here
        alive = [server.proc.poll() is None for server in servers]
        report_load(results, args)
        report_evaluations(evaluations)
        report_servers(watch, alive)
        report_subscribers(subscribers, drained, world)
        await report_webhooks(dsn, pre_soak, received_path)
        report_logs([workdir / "server0.log", workdir / "server1.log", workdir / "deliver.log"])
    finally:
        await stack.aclose()
        for subscriber in subscribers:
            if subscriber.task is not None:
                subscriber.task.cancel()
        for server in servers:
            server.stop()
        for child in (deliverer, receiver):
            if child.returncode is None:
                child.terminate()
                await child.wait()
        deliver_log.close()


async def drive(
    args: argparse.Namespace,
    world: World,
    servers: list[ServerProcess],
    market: Market,
    workdir: Path,
) -> tuple[list[LoadResult], list[tuple[float, str, date, float, float]], Watch]:
    """The load, the evaluations and RSS samples; returns what each of them measured."""
    ports = [server.port for server in servers]
    seconds = args.warmup + args.duration
    loads = []
    for index, op in enumerate(OPERATIONS):
        script = workdir / f"op{index}.lua"
        script.write_text(wrk_script(op, world, ports, args.rate))
        loads.append(asyncio.create_task(run_wrk(op, script, ports[0], seconds)))
    started = time.monotonic()
    evaluations: list[tuple[float, str, date, float, float]] = []
    watch = Watch(cpu=cpu_total(servers))
    next_eval, next_sample = started + 5.0, started
    while (now := time.monotonic()) < started + seconds:
        for load in loads:
            if load.done():
                load.result()  # a wrk that stopped early ends the soak with its output
        if now >= next_sample:
            watch.sample(servers)
            next_sample += 10.0
        if not watch.baseline and now >= started + args.warmup:
            watch.baseline = rss_mb(servers)
        if args.eval_interval > 0 and now >= next_eval:
            flipping = market.next_tickers(max(1, round(args.flip * len(market.tickers))))
            summary, day, import_s, evaluate_s = await market.step(flipping)
            evaluations.append((now - started, summary, day, import_s, evaluate_s))
            next_eval += args.eval_interval
        await asyncio.sleep(0.5)
    watch.end = rss_mb(servers)
    watch.cpu = [a - b for a, b in zip(cpu_total(servers), watch.cpu, strict=True)]
    watch.seconds = time.monotonic() - started
    results = await asyncio.gather(*loads)
    return results, evaluations, watch


async def drain(
    dsn: str, pre_soak: set[str], subscribers: list[Subscriber], world: World
) -> dict[int, list[str]]:
    """Soak alerts per user index, once every subscriber has them all (or DRAIN_SECONDS)."""
    by_user = await alert_ids(dsn)
    index = {user: i for i, user in enumerate(world.users)}
    expected = {
        index[user]: [a for a in ids if a not in pre_soak]
        for user, ids in by_user.items()
        if user in index
    }
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        if all(
            all(s.counts[a] for a in expected.get(s.user, [])) or s.task is None or s.task.done()
            for s in subscribers
        ):
            break
        await asyncio.sleep(0.5)
    return expected


def report_load(results: list[LoadResult], args: argparse.Namespace) -> None:
    total = sum(r.requests for r in results)
    seconds = args.warmup + args.duration
    print(f"\nHTTP load: {total} requests in {seconds:g} s ({total / seconds:.0f} req/s)")
    print(f"  {'operation':<22}{'requests':>9}{'share':>7}{'p50 ms':>9}{'p99 ms':>9}  errors")
    for r in results:
        print(
            f"  {r.name:<22}{r.requests:>9}{r.requests / max(total, 1):>7.0%}{r.p50:>9.1f}"
            f"{r.p99:>9.1f}  http {r.http_errors}, graphql {r.graphql_errors}"
            + (f"  e.g. {r.sample[:160]}" if r.sample else "")
        )


def report_evaluations(evaluations: list[tuple[float, str, date, float, float]]) -> None:
    print(f"\nevaluations: {len(evaluations)}")
    for at, summary, day, import_s, evaluate_s in evaluations:
        print(
            f"  t={at:5.0f}s  {day}: import-csv {import_s:.1f} s, evaluate {evaluate_s:.1f} s: "
            f"{summary}"
        )


def report_servers(watch: Watch, alive: list[bool]) -> None:
    print("\nserver RSS (MB), after the warm-up → at the end of the load:")
    verdicts = []
    for i, (start, end) in enumerate(zip(watch.baseline, watch.end, strict=True)):
        samples = [row[i] for row in watch.samples]
        growth = end / start - 1
        verdicts.append(growth < RSS_GROWTH_LIMIT and alive[i])
        print(
            f"  process {i + 1}: {start:.0f} → {end:.0f} ({growth:+.1%}), "
            f"{'running' if alive[i] else 'EXITED'}; CPU {watch.cpu[i]:.0f} s in "
            f"{watch.seconds:.0f} s ({watch.cpu[i] / watch.seconds:.0%} of a core); "
            f"RSS each minute: {' '.join(f'{mb:.0f}' for mb in samples[::6])}"
        )
    print(f"  RSS growth < {RSS_GROWTH_LIMIT:.0%}: {'PASS' if all(verdicts) else 'FAIL'}")


def report_subscribers(
    subscribers: list[Subscriber], expected: dict[int, list[str]], world: World
) -> None:
    missing = duplicated = unexpected = deliveries = 0
    for s in subscribers:
        wanted = set(expected.get(s.user, []))
        deliveries += len(wanted)
        missing += sum(1 for a in wanted if not s.counts[a])
        duplicated += sum(n - 1 for a, n in s.counts.items() if a in wanted and n > 1)
        unexpected += sum(n for a, n in s.counts.items() if a not in wanted)
    alerts = sum(len(ids) for ids in expected.values())
    latencies = [x for s in subscribers for x in s.latencies]
    problems = [p for s in subscribers for p in s.problems]
    print(
        f"\nsubscriptions: {alerts} alerts written during the soak for {len(world.users)} users, "
        f"{deliveries} expected deliveries to {len(subscribers)} subscribers: missing {missing}, "
        f"duplicated {duplicated}, unexpected {unexpected}, socket/protocol problems "
        f"{len(problems)}" + (f" (e.g. {problems[0]})" if problems else "")
    )
    if latencies:
        print(
            f"  latency from the alert's sent_at (its transaction's start) to receipt: "
            f"p50 {1000 * percentile(latencies, 0.5):.0f} ms, "
            f"p99 {1000 * percentile(latencies, 0.99):.0f} ms, max {1000 * max(latencies):.0f} ms"
        )
    ok = missing == duplicated == unexpected == 0 and not problems
    print(f"  every soak alert to every subscriber of its user exactly once: {verdict(ok, alerts)}")


async def report_webhooks(dsn: str, pre_soak: set[str], received_path: Path) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT d.id::text AS id, a.id::text AS alert, extract(epoch FROM a.sent_at) AS sent "
            "FROM deliveries d JOIN alert_history a ON a.id = d.alert_id "
            "WHERE d.channel = 'webhook'"
        )
    finally:
        await conn.close()
    sent = {r["id"]: float(r["sent"]) for r in rows if r["alert"] not in pre_soak}
    arrivals = [line.split() for line in received_path.read_text().splitlines()]
    counts = Counter(webhook_id for webhook_id, _ in arrivals)
    first: dict[str, float] = {}
    for webhook_id, moment in arrivals:
        first.setdefault(webhook_id, float(moment))
    missing = sum(1 for d in sent if not counts[d])
    duplicated = sum(counts[d] - 1 for d in sent if counts[d] > 1)
    latencies = [first[d] - sent[d] for d in sent if d in first]
    print(
        f"\nwebhooks: {len(sent)} deliveries of soak alerts: missing {missing}, "
        f"duplicated {duplicated}"
        + (
            f"; sent_at → received p50 {1000 * percentile(latencies, 0.5):.0f} ms, "
            f"p99 {1000 * percentile(latencies, 0.99):.0f} ms"
            if latencies
            else ""
        )
    )
    ok = missing == duplicated == 0
    print(f"  every webhook delivery received exactly once: {verdict(ok, len(sent))}")


def verdict(ok: bool, checked: int) -> str:
    return "n/a (nothing written to check)" if not checked else "PASS" if ok else "FAIL"


def report_logs(paths: list[Path]) -> None:
    """Warnings and errors the servers and the deliverer logged; logs with any are kept."""
    print("\nlogs (warnings and errors):")
    kept: Path | None = None
    for path in paths:
        text = path.read_text(errors="replace").splitlines()
        lines = [line for line in text if any(level in line for level in LOG_LEVELS)]
        if lines:
            kept = kept or Path(tempfile.mkdtemp(prefix="mc-soak-logs-"))
            shutil.copy(path, kept / path.name)  # the work directory is removed at the end
        print(
            f"  {path.name}: {len(lines)} lines" + (f", first: {lines[0][:200]}" if lines else "")
        )
    if kept is not None:
        print(f"  kept in {kept}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds after the warm-up")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before RSS baseline")
    parser.add_argument("--rate", type=float, default=100, help="offered HTTP requests/s")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--watch", type=int, default=5, help="stocks on each watchlist")
    parser.add_argument(
        "--eval-interval", type=float, default=60, help="seconds between evaluations; 0: none"
    )
    parser.add_argument(
        "--flip", type=float, default=0.25, help="share of the stocks each evaluation flips"
    )
    parser.add_argument("--webhook-users", type=int, default=20)
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="subscribers do not offer permessage-deflate (browsers do; it costs server memory)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk missing: `apt-get install wrk`")
    slowest = max(pause_ms(op, 1.0) for op in OPERATIONS)
    if slowest / args.rate > MAX_PAUSE_MS:
        parser.error(
            f"--rate must be >= {slowest / MAX_PAUSE_MS:.0f}: slower, idle connections "
            "outlive uvicorn's 5 s keep-alive and wrk counts the reconnects as errors"
        )
    if not 0 < args.watch < args.tickers or args.users < 2:
        parser.error("need 0 < --watch < --tickers and --users >= 2")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
