"""Benchmark: a user's cost must not depend on how many other users there are (1/10 scale).

Usage: python bench/scale.py [--dsn URL] [--users 100000] [--stocks 8000] [--only 1,2,3,4,5,6]
                             [--keep] [--step-timeout 120] [--eval-timeout 900]

Generates, in a scratch database on --dsn / DATABASE_URL (default the local server on :5432;
created, migrated with `python -m migrations up`, dropped at the end unless --keep), 1/10 of
the target deployment: --users users x 20 stocks over --stocks stocks, Zipf popularity with the
top stock watched by 30 % of the users, a share of users with an email or a webhook, and one
day of signal history (the "previous" states). Market data comes from the offline demo
(`python -m ingest demo` into a scratch object store): every bench stock gets the history
object of a demo stock, 1 in 100 a stock whose state changes on the evaluated date. Then it
prints each figure next to its target:

1. one state change at W = 10k..80k watchers of one stock (`python -m ingest evaluate
   --tickers X` as a subprocess), growth per doubling, and the longest wait of an unrelated
   writer running meanwhile (another user's watchlist insert/delete, settings, entity update);
2. a full daily evaluation (~1 % of stocks changing): seconds, rows written, WAL bytes;
3. watchlist p99 with the response cache off (wrk, users sampled by popularity, and one
   watching the 20 most popular);
4. the first `alerts` page of a user with 10,000 alerts after filtered calls (HTTP, one
   keep-alive connection, cache off);
5. a webhook outbox claim beside 300,000 pending email deliveries;
6. one user's cache hit ratio while others write 50 mutations/s and an evaluation commits
   stocks it does not show.

Only public interfaces are used (CLI commands, GraphQL over HTTP, SQL), except the outbox
claim in `claim_webhooks_once`. A measurement that fails or times out prints FAIL and the
run goes on. docs/operations.md ("Scale") has the figures measured on the reference box.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.postgraphile.answers import OUR_QUERY
from services.auth.tokens import issue_token
from services.db import dsn_with_database

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-scale-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
# The demo's dates: states are set on BASELINE, and some demo stocks change by EVALUATED.
BASELINE = date(2025, 3, 31)
EVALUATED = date(2025, 4, 30)
PREVIOUS = EVALUATED - timedelta(days=1)
STATES = ("valuation_regime", "trend_position", "fundamental_direction")

# The watchlist query of the PostGraphile comparison, so both benchmarks ask the same.
WATCHLIST_QUERY = OUR_QUERY

ALERTS_QUERY = """query Alerts($first: Int, $after: String, $type: AlertType,
                               $ticker: String, $unread: Boolean) {
  alerts(first: $first, after: $after, type: $type, ticker: $ticker, unread: $unread) {
    edges { cursor node { id headline asOf } } pageInfo { hasNextPage endCursor } } }"""


def user_id(n: int) -> uuid.UUID:
    """User n's id: md5('u' || n) in SQL, so generation and measurements agree."""
    return uuid.UUID(hashlib.md5(f"u{n}".encode()).hexdigest())


def stock_ticker(rank: int) -> str:
    return f"S{rank:05d}"


# --- results ------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    target: str
    ok: bool | None  # None: informational


@dataclass
class Bench:
    args: argparse.Namespace
    server_dsn: str
    dsn: str
    database: str
    root: Path
    rows: list[Row] = field(default_factory=list)
    changing: list[str] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = field(default_factory=dict)

    # Special users after the U ordinary ones (0..U-1).
    @property
    def top20_user(self) -> int:
        return self.args.users

    @property
    def alerts_user(self) -> int:
        return self.args.users + 1

    @property
    def reader_user(self) -> int:
        return self.args.users + 2

    @property
    def unrelated_user(self) -> int:
        return self.args.users + 3

    @property
    def webhook_user(self) -> int:
        return self.args.users + 4

    @property
    def first_writer(self) -> int:
        return self.args.users + 10

    def add(self, figure: str, measured: str, target: str, ok: bool | None) -> None:
        self.rows.append(Row(figure, measured, target, ok))
        mark = "" if ok is None else ("  ok" if ok else "  NOT MET")
        print(f"  {figure}: {measured}   (target {target}){mark}", flush=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "APP_ENV": "development",
            "DATA_DIR": str(self.root),
            "OBJECT_STORE_URL": f"file://{self.root / 'objects'}",
            "JWT_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
            **extra,
        }


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, command_timeout=3600)


# --- subprocesses ----------------------------------------------------------------------------


async def run_cli(
    bench: Bench, args: list[str], limit: float, **extra: str
) -> tuple[int | None, float, str]:
    """`python -m <args>` in the repo: (exit code or None on timeout, seconds, output tail)."""
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=ROOT,
        env=bench.env(**extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), limit)
        return process.returncode, time.perf_counter() - began, output.decode()[-2000:]
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return None, time.perf_counter() - began, "timed out"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`python server.py` on `port`, one worker, output discarded."""
    return subprocess.Popen(
        [sys.executable, "server.py", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def server(bench: Bench, name: str, cache_mb: str) -> str:
    """The URL of a `python server.py` on the scratch database (started once per name)."""
    if name in bench.servers:
        return bench.servers[name][1]
    port = free_port()
    process = start_server(bench.env(RESPONSE_CACHE_MB=cache_mb), port)
    base = f"http://127.0.0.1:{port}"
    bench.servers[name] = (process, base)
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"server {name} exited with {process.returncode}")
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server {name} did not become ready in 60 s")


def stop_servers(bench: Bench) -> None:
    for process, _ in bench.servers.values():
        process.terminate()
    for process, _ in bench.servers.values():
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    bench.servers.clear()


def bearer(n: int) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(SECRET, user_id(n), ttl_seconds=6 * 3600)}"}


# --- data generation -------------------------------------------------------------------------


def zipf_counts(stocks: int, slots: int, top: int) -> list[int]:
    """Watchers per popularity rank: top / rank^s, s chosen so they sum to `slots`."""
    low, high = 0.0, 4.0
    for _ in range(60):
        s = (low + high) / 2
        total = sum(top / r**s for r in range(1, stocks + 1))
        low, high = (s, high) if total > slots else (low, s)
    counts = [max(1, int(top / r**s)) for r in range(1, stocks + 1)]
    missing = slots - sum(counts)
    rank = stocks - 1
    while missing != 0:  # spread the rounding over the tail, never above `top`
        step = 1 if missing > 0 else -1
        if 1 <= counts[rank] + step <= top:
            counts[rank] += step
            missing -= step
        rank = rank - 1 if rank > 0 else stocks - 1
    return counts


async def load_templates(bench: Bench) -> None:
    """The offline demo into the scratch database and store; picks changing/quiet templates."""
    code, seconds, output = await run_cli(bench, ["ingest", "demo"], 600)
    if code != 0:
        raise RuntimeError(f"`python -m ingest demo` failed: {output}")
    conn = await connect(bench.dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT e.ticker, a.valuation_regime AS a1, a.trend_position AS a2,
                   a.fundamental_direction AS a3, b.valuation_regime AS b1,
                   b.trend_position AS b2, b.fundamental_direction AS b3
            FROM entities e
            JOIN entity_signals a ON a.entity_id = e.id AND a.as_of = $1
            JOIN entity_signals b ON b.entity_id = e.id AND b.as_of = $2
            ORDER BY e.ticker""",
            BASELINE,
            EVALUATED,
        )
        # The demo user's watchlist would make its stocks part of every full run.
        await conn.execute("DELETE FROM users WHERE email IS NOT NULL")
    finally:
        await conn.close()
    for row in rows:
        before, after = [row[f"a{i}"] for i in (1, 2, 3)], [row[f"b{i}"] for i in (1, 2, 3)]
        if "UNKNOWN" in before or "UNKNOWN" in after:
            continue
        has_history = (bench.root / "objects" / "history" / "v1" / row["ticker"]).is_dir()
        if not has_history:
            continue
        changes = sum(x != y for x, y in zip(before, after, strict=True))
        if changes == 1:
            bench.changing.append(row["ticker"])
        elif changes == 0:
            bench.quiet.append(row["ticker"])
    if not bench.changing or not bench.quiet:
        raise RuntimeError(f"no usable demo templates (changing {bench.changing})")
    print(
        f"templates ({seconds:.0f} s): changing {', '.join(bench.changing)}; "
        f"quiet {len(bench.quiet)} stocks",
        flush=True,
    )


def link_history(bench: Bench, ticker: str, template: str) -> None:
    """The template's history object as `ticker`'s (a hard link: no copy)."""
    source = bench.root / "objects" / "history" / "v1" / template
    target = bench.root / "objects" / "history" / "v1" / ticker
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        destination = target / item.name
        if not destination.exists():
            os.link(item, destination)


ENTITIES_SQL = """
INSERT INTO entities (id, ticker, name, sector, exchange, has_price_data, price_data_min_date,
    price_data_max_date, has_fundamental_data, fundamental_data_min_date,
    fundamental_data_max_date, data_status, in_symbol_universe, last_data_update)
SELECT md5('s' || x.ticker)::uuid, x.ticker, 'Bench ' || x.ticker, t.sector, t.exchange,
       t.has_price_data, t.price_data_min_date, t.price_data_max_date,
       t.has_fundamental_data, t.fundamental_data_min_date, t.fundamental_data_max_date,
       t.data_status, true, now()
FROM unnest($1::text[], $2::text[]) AS x(ticker, template)
JOIN entities t ON t.ticker = x.template
"""

# The previous day's signal of each new stock: its template's signal on BASELINE.
PREVIOUS_SIGNALS_SQL = """
INSERT INTO entity_signals (entity_id, as_of, close, sma200, trend_position, valuation_metric,
    valuation_multiple, valuation_percentile, valuation_regime, eps_ttm, fundamental_direction,
    details, computed_at)
SELECT md5('s' || x.ticker)::uuid, $3::date, s.close, s.sma200, s.trend_position,
       s.valuation_metric,
       s.valuation_multiple, s.valuation_percentile, s.valuation_regime, s.eps_ttm,
       s.fundamental_direction, s.details, now() - interval '1 day'
FROM unnest($1::text[], $2::text[]) AS x(ticker, template)
JOIN entities t ON t.ticker = x.template
JOIN entity_signals s ON s.entity_id = t.id AND s.as_of = $4
"""

# Watch slots laid out stock after stock; slot i belongs to user i mod U. A stock's slots are
# contiguous and fewer than U, so no user gets a stock twice, and every user gets slots/U.
WATCHLISTS_SQL = """
INSERT INTO watchlists (user_id, entity_id, added_at)
SELECT md5('u' || ((x.start + g) % $4::int))::uuid, md5('s' || x.ticker)::uuid,
       now() - interval '30 days'
FROM unnest($1::text[], $2::bigint[], $3::int[]) AS x(ticker, start, watchers),
     generate_series(0, x.watchers - 1) AS g
"""

# Explicit watchers (user numbers) of explicit stocks.
WATCH_SQL = """
INSERT INTO watchlists (user_id, entity_id, added_at)
SELECT md5('u' || u)::uuid, md5('s' || t)::uuid, now() - interval '30 days'
FROM unnest($1::int[]) AS u, unnest($2::text[]) AS t
ON CONFLICT DO NOTHING
"""


async def stores_per_user_states(conn: asyncpg.Connection) -> bool:
    """Whether the schema still keeps a state row per watcher (before migration 0008)."""
    note = await conn.fetchval(
        "SELECT coalesce(obj_description('user_entity_settings'::regclass, 'pg_class'), '')"
    )
    return not str(note).startswith("Retired")


# Each watcher's stored states (before 0008): what the stock showed on the previous day.
STATES_SQL = """
INSERT INTO user_entity_settings (user_id, entity_id, last_valuation_regime,
    last_trend_position, last_fundamental_direction, last_evaluated_at, last_evaluated_as_of)
SELECT w.user_id, w.entity_id, s.valuation_regime, s.trend_position, s.fundamental_direction,
       now() - interval '1 day', s.as_of
FROM watchlists w
JOIN entity_signals s ON s.entity_id = w.entity_id AND s.as_of = $2
WHERE w.entity_id = ANY(SELECT md5('s' || t)::uuid FROM unnest($1::text[]) AS t)
ON CONFLICT (user_id, entity_id) DO NOTHING
"""


def template_of(bench: Bench, rank: int) -> str:
    every = bench.args.change_every
    if rank % every == every // 2:
        return bench.changing[rank % len(bench.changing)]
    return bench.quiet[rank % len(bench.quiet)]


async def add_stocks(
    conn: asyncpg.Connection, bench: Bench, tickers: list[str], templates: list[str]
) -> None:
    """Entities, history objects and the previous day's signals of new bench stocks."""
    for ticker, template in zip(tickers, templates, strict=True):
        link_history(bench, ticker, template)
    await conn.execute(ENTITIES_SQL, tickers, templates)
    await conn.execute(PREVIOUS_SIGNALS_SQL, tickers, templates, PREVIOUS, BASELINE)


async def generate(bench: Bench) -> None:
    """Users, stocks, watchlists, states, emails and webhooks (set-based SQL)."""
    args = bench.args
    began = time.perf_counter()
    users, stocks, per_user = args.users, args.stocks, args.per_user
    top = min(users, args.top_watchers or max(1, round(0.3 * users)))
    counts = zipf_counts(stocks, users * per_user, top)
    tickers = [stock_ticker(r) for r in range(1, stocks + 1)]
    templates = [template_of(bench, r) for r in range(1, stocks + 1)]
    starts = [0]
    for count in counts[:-1]:
        starts.append(starts[-1] + count)
    conn = await connect(bench.dsn)
    try:
        extra = 200  # the special users after U (top20, alerts, reader, writers, ...)
        await conn.execute(
            """
            INSERT INTO users (id, email, onboarded_at, investing_style, created_at)
            SELECT md5('u' || n)::uuid,
                   CASE WHEN n < $1::int AND (n * 7919) % 1000 < $3::int
                        THEN 'u' || n || '@bench.invalid' END,
                   now() - interval '60 days', 'blend', now() - interval '60 days'
            FROM generate_series(0, $1::int + $2::int - 1) AS n""",
            users,
            extra,
            round(1000 * args.email_share),
        )
        await conn.execute(
            """
            INSERT INTO webhook_endpoints (user_id, url, secret)
            SELECT md5('u' || n)::uuid, 'http://127.0.0.1:9/bench-hook',
                   'whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0wMQ=='
            FROM generate_series(0, $1::int - 1) AS n WHERE (n * 7919) % 1000 >= 1000 - $2::int""",
            users,
            round(1000 * args.webhook_share),
        )
        print(
            f"  users: {users:,} (+{extra} special) in {time.perf_counter() - began:.0f} s",
            flush=True,
        )
        await add_stocks(conn, bench, tickers, templates)
        print(f"  stocks: {stocks:,} in {time.perf_counter() - began:.0f} s", flush=True)
        chunk = max(1, stocks // 20)
        for first in range(0, stocks, chunk):
            part = slice(first, first + chunk)
            await conn.execute(WATCHLISTS_SQL, tickers[part], starts[part], counts[part], users)
        await conn.execute(WATCH_SQL, [bench.top20_user], tickers[:20])
        await conn.execute(WATCH_SQL, [bench.reader_user], tickers[20 : 20 + per_user])
        print(
            f"  watchlists: {sum(counts):,} rows (top stock {counts[0]:,} watchers, "
            f"median {counts[len(counts) // 2]:,}, last {counts[-1]:,}) "
            f"in {time.perf_counter() - began:.0f} s",
            flush=True,
        )
        if await stores_per_user_states(conn):
            for first in range(0, stocks, chunk):
                await conn.execute(STATES_SQL, tickers[first : first + chunk], PREVIOUS)
            print(f"  states: in {time.perf_counter() - began:.0f} s", flush=True)
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    changing = sum(1 for r in range(1, stocks + 1) if template_of(bench, r) in bench.changing)
    print(
        f"generated in {time.perf_counter() - began:.0f} s: {users:,} users x {per_user} over "
        f"{stocks:,} stocks, {changing} stocks change state on {EVALUATED}; "
        f"database {size / 1e6:,.0f} MB",
        flush=True,
    )


# --- 1. one state change at W watchers -------------------------------------------------------


class UnrelatedWriter:
    """One-row writes another user would do, timed one by one (the longest is the figure)."""

    def __init__(self, dsn: str, user: int, stock: str, other_stock: str) -> None:
        self.dsn, self.user, self.stock, self.other = dsn, user_id(user), stock, other_stock
        self.longest = 0.0
        self.count = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        conn = await connect(self.dsn)
        statements = [
            (
                "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, md5('s' || $2)::uuid) "
                "ON CONFLICT DO NOTHING",
                (self.user, self.stock),
            ),
            (
                "DELETE FROM watchlists WHERE user_id = $1 AND entity_id = md5('s' || $2)::uuid",
                (self.user, self.stock),
            ),
            (
                "UPDATE users SET alerts_enabled = NOT alerts_enabled, updated_at = now() "
                "WHERE id = $1",
                (self.user,),
            ),
            (
                "UPDATE entities SET updated_at = now() WHERE id = md5('s' || $1)::uuid",
                (self.other,),
            ),
        ]
        try:
            while not self.stop.is_set():
                for sql, params in statements:
                    began = time.perf_counter()
                    await conn.execute(sql, *params)
                    self.longest = max(self.longest, time.perf_counter() - began)
                    self.count += 1
                try:
                    await asyncio.wait_for(self.stop.wait(), 0.02)
                except TimeoutError:
                    pass
        finally:
            await conn.close()


async def measure_bursts(bench: Bench) -> None:
    """1: one stock changes state with W watchers; evaluation seconds and writers' wait."""
    args = bench.args
    steps = [min(w, args.users) for w in args.steps]
    template = bench.changing[0]
    tickers = [f"STEP{n}" for n in range(len(steps))]
    conn = await connect(bench.dsn)
    times: dict[int, float | None] = {}
    failed: dict[int, str] = {}
    waits: list[float] = []
    try:
        await add_stocks(conn, bench, tickers, [template] * len(tickers))
        for ticker, watchers in zip(tickers, steps, strict=True):
            await conn.execute(WATCH_SQL, list(range(watchers)), [ticker])
            if await stores_per_user_states(conn):
                await conn.execute(STATES_SQL, [ticker], PREVIOUS)
        await conn.execute("ANALYZE watchlists; ANALYZE user_entity_settings")
        for ticker, watchers in zip(tickers, steps, strict=True):
            writer = UnrelatedWriter(
                bench.dsn,
                bench.unrelated_user,
                stock_ticker(args.stocks // 2),
                stock_ticker(args.stocks // 2 + 1),
            )
            task = asyncio.create_task(writer.run())
            await asyncio.sleep(0.5)
            code, seconds, output = await run_cli(
                bench,
                ["ingest", "evaluate", "--as-of", EVALUATED.isoformat(), "--tickers", ticker],
                args.step_timeout,
            )
            await asyncio.sleep(0.5)
            writer.stop.set()
            await task
            alerts = await conn.fetchval(
                "SELECT count(*) FROM alert_history WHERE entity_id = md5('s' || $1)::uuid", ticker
            )
            deliveries = await conn.fetchval(
                """SELECT count(*) FROM deliveries d JOIN alert_history a ON a.id = d.alert_id
                   WHERE a.entity_id = md5('s' || $1)::uuid""",
                ticker,
            )
            waits.append(writer.longest)
            if code == 0:
                times[watchers] = seconds
                state = f"{seconds:.1f} s"
            else:
                times[watchers] = None
                errors = re.findall(r"failed: (\w+)", output)
                failed[watchers] = (
                    f"killed at the {args.step_timeout:g} s cap"
                    if code is None
                    else f"FAIL after {seconds:.0f} s (exit {code}"
                    + (f", {errors[0]})" if errors else ")")
                )
                state = f"{failed[watchers]}: {output.strip()[-300:]}"
            print(
                f"  W={watchers:,}: {state}, {alerts:,} alerts, {deliveries:,} deliveries; "
                f"unrelated writer: longest wait {1000 * writer.longest:.0f} ms "
                f"over {writer.count} writes",
                flush=True,
            )
    finally:
        # The step stocks and everything hanging off them go, so later runs see only the base.
        await conn.execute("DELETE FROM entities WHERE ticker LIKE 'STEP%'")
        await conn.close()
    for watchers, took in times.items():
        ok = took is not None and (watchers < max(times) or took <= 10)
        target = "<= 10 s at the largest W" if watchers == max(times) else "linear"
        shown = f"{took:.1f} s" if took is not None else failed[watchers]
        bench.add(
            f"1. state change, W={watchers:,}",
            shown,
            target,
            ok if watchers == max(times) else None,
        )
    ordered = sorted(times)
    ratios = []
    for small, large in zip(ordered, ordered[1:], strict=False):
        a, b = times[small], times[large]
        doublings = math.log2(large / small)
        ratios.append(None if a is None or b is None else (b / a) ** (1 / doublings))
    if ratios:
        shown = ", ".join("n/a" if r is None else f"x{r:.2f}" for r in ratios)
        ok = all(r is not None and r <= 2.2 for r in ratios)
        bench.add("1. growth per doubling of W", shown, "<= x2.2", ok)
    if waits:
        bench.add(
            "1. unrelated writer, longest wait",
            f"{1000 * max(waits):.0f} ms",
            "<= 200 ms",
            max(waits) <= 0.2,
        )


# --- 2. the full daily evaluation ------------------------------------------------------------


async def table_writes(conn: asyncpg.Connection) -> dict[str, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = await conn.fetch(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables"
    )
    return {row["relname"]: row["n"] for row in rows}


async def measure_daily(bench: Bench) -> None:
    """2: `evaluate` over every watched stock: seconds, rows written, WAL bytes."""
    conn = await connect(bench.dsn)
    try:
        before = await table_writes(conn)
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        alerts_before = await conn.fetchval("SELECT count(*) FROM alert_history")
        deliveries_before = await conn.fetchval("SELECT count(*) FROM deliveries")
        code, seconds, output = await run_cli(
            bench, ["ingest", "evaluate", "--as-of", EVALUATED.isoformat()], bench.args.eval_timeout
        )
        await asyncio.sleep(1.5)  # backends flush their table statistics on exit (PG 15+)
        wal = float(await conn.fetchval("SELECT pg_current_wal_lsn() - $1::text::pg_lsn", lsn))
        after = await table_writes(conn)
        alerts = await conn.fetchval("SELECT count(*) FROM alert_history") - alerts_before
        deliveries = await conn.fetchval("SELECT count(*) FROM deliveries") - deliveries_before
        evaluated = await conn.fetchval(
            """SELECT count(*) FROM entity_signals s JOIN entities e ON e.id = s.entity_id
               WHERE s.as_of = $1 AND e.ticker ~ '^S[0-9]+$'""",
            EVALUATED,
        )
    finally:
        await conn.close()
    written = {
        name: n - before.get(name, 0) for name, n in after.items() if n - before.get(name, 0)
    }
    # Claims, runs and cache-version bumps are listed per table above, not counted here.
    bookkeeping = {"evaluation_runs", "evaluation_claims", "cache_flush_requests", "cache_versions"}
    domain = sum(n for name, n in written.items() if name not in bookkeeping)
    total = sum(written.values())
    budget = evaluated + 2 * alerts + deliveries
    note = "" if bench.args.stocks == 8000 else f" (--stocks {bench.args.stocks}, not 8,000)"
    print(f"  rows written per table: {json.dumps(dict(sorted(written.items())))}", flush=True)
    if code != 0:
        reason = f"timeout > {bench.args.eval_timeout:.0f} s" if code is None else f"exit {code}"
        bench.add(
            f"2. daily evaluation{note}",
            f"FAIL ({reason}; {evaluated:,} stocks done, {alerts:,} alerts)",
            "completes",
            False,
        )
    else:
        bench.add(
            f"2. daily evaluation{note}",
            f"{seconds:.0f} s for {evaluated:,} stocks, {alerts:,} alerts, "
            f"{deliveries:,} deliveries",
            "(reported)",
            None,
        )
    bench.add(
        "2. rows written (data tables)",
        f"{domain:,} (all tables {total:,})",
        f"<= stocks + 2 x alerts + deliveries = {budget:,}",
        code == 0 and domain <= budget,
    )
    bench.add(
        "2. WAL bytes (whole server)",
        f"{wal / 1e6:,.0f} MB ({wal / max(1, evaluated) / 1e3:,.0f} kB per stock)",
        "(reported)",
        None,
    )


# --- 3. watchlist p99 uncached ---------------------------------------------------------------


WRK_SCRIPT = """
local tokens = {%s}
local i = 0
wrk.method = "POST"
wrk.body = %s
wrk.headers["content-type"] = "application/json"
request = function()
  i = i + 1
  wrk.headers["authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1]
  return wrk.format()
end
"""


def _lua(text: str) -> str:
    return "[==[" + text + "]==]"


async def wrk_p99(
    url: str, users: list[int], connections: int, seconds: int
) -> tuple[float, int, int]:
    """(p99 ms, requests, errors) of `wrk` posting the watchlist query as `users` in turn."""
    tokens = ", ".join(_lua(bearer(n)["authorization"].split(" ", 1)[1]) for n in users)
    body = json.dumps({"query": WATCHLIST_QUERY})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT % (tokens, _lua(body)))
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            handle.name,
            f"{url}/graphql",
            stdout=asyncio.subprocess.PIPE,
        )
        output = (await process.communicate())[0].decode()
    finally:
        os.unlink(handle.name)
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    found = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    done = re.search(r"(\d+) requests in", output)
    if found is None or done is None:
        raise RuntimeError(f"unexpected wrk output: {output[-500:]}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return (
        float(found.group(1)) * units[found.group(2)],
        int(done.group(1)),
        int(errors.group(1)) if errors else 0,
    )


async def sample_users(bench: Bench, per_decile: int) -> list[int]:
    """Users picked in each decile of their stocks' summed popularity."""
    conn = await connect(bench.dsn)
    try:
        rows = await conn.fetch(
            """
            WITH counts AS (SELECT entity_id, count(*) AS c FROM watchlists GROUP BY entity_id),
            scores AS (
                SELECT w.user_id, sum(c.c) AS score FROM watchlists w
                JOIN counts c USING (entity_id) GROUP BY w.user_id
            )
            SELECT user_id, ntile(10) OVER (ORDER BY score) AS decile FROM scores""",
        )
    finally:
        await conn.close()
    by_id = {user_id(n): n for n in range(bench.args.users)}
    deciles: dict[int, list[int]] = {}
    for row in rows:
        if row["user_id"] in by_id:
            deciles.setdefault(row["decile"], []).append(by_id[row["user_id"]])
    rng = random.Random(7)
    picked = []
    for members in deciles.values():
        picked += rng.sample(members, min(per_decile, len(members)))
    return picked


async def measure_watchlist(bench: Bench) -> None:
    """3: p99 of the watchlist with the response cache off, sampled users and the top-20 user."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk missing (`apt-get install -y wrk`)")
    url = await server(bench, "uncached", "0")
    users = await sample_users(bench, 5)
    async with httpx.AsyncClient(timeout=30) as http:
        for n in (users[0], bench.top20_user):
            response = await http.post(
                f"{url}/graphql", json={"query": WATCHLIST_QUERY}, headers=bearer(n)
            )
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise RuntimeError(f"watchlist answered {response.status_code}: {str(body)[:300]}")
    c, s = bench.args.connections, bench.args.wrk_seconds
    await wrk_p99(url, users, c, 2)  # warm-up
    sampled, requests, errors = await wrk_p99(url, users, c, s)
    top, top_requests, top_errors = await wrk_p99(url, [bench.top20_user], c, s)
    bench.add(
        f"3. watchlist p99 uncached, {len(users)} sampled users",
        f"{sampled:.1f} ms ({requests / s:.0f} req/s, {errors} errors, {c} connections)",
        "<= 30 ms",
        sampled <= 30 and errors == 0,
    )
    bench.add(
        "3. watchlist p99 uncached, user watching the top 20",
        f"{top:.1f} ms ({top_requests / s:.0f} req/s, {top_errors} errors)",
        "<= 30 ms",
        top <= 30 and top_errors == 0,
    )


# --- 4. first alerts page after filtered calls -----------------------------------------------


def rare_ticker(bench: Bench) -> str:
    """The last stock: outside the first 500, which carry the alerts user's history."""
    return stock_ticker(bench.args.stocks)


async def seed_user_alerts(bench: Bench, user: int, count: int) -> None:
    """`count` alerts of one user over many stocks, types and days, half of them opened."""
    conn = await connect(bench.dsn)
    try:
        stocks = min(500, bench.args.stocks)
        await conn.execute(
            """
            INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, previous_state,
                new_state, headline, what_changed, why_it_matters, before_vs_now,
                what_didnt_change, sent_at, opened_at)
            SELECT md5('u' || $1::int)::uuid,
                   md5('s' || 'S' || lpad((1 + i % $3::int)::text, 5, '0'))::uuid,
                   (ARRAY['valuation_regime_change', 'trend_break',
                          'fundamental_inflection'])[1 + (i / $3::int) % 3],
                   $4::date - (i / ($3::int * 3)), 'ABOVE_200DMA', 'BELOW_200DMA',
                   'Bench alert ' || i, 'changed', 'matters', 'before vs now', 'unchanged',
                   now() - i * interval '1 minute',
                   CASE WHEN i % 2 = 0 THEN now() END
            FROM generate_series(0, $2::int - 1) AS i""",
            user,
            count,
            stocks,
            PREVIOUS,
        )
        # One alert, the oldest, for a stock otherwise absent from the user's history: a plan
        # that walks the history newest first to find it reads all of it.
        await conn.execute(
            """
            INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, previous_state,
                new_state, headline, what_changed, why_it_matters, before_vs_now,
                what_didnt_change, sent_at)
            VALUES (md5('u' || $1::int)::uuid, md5('s' || $2::text)::uuid, 'trend_break',
                    $3::date - 400, 'ABOVE_200DMA', 'BELOW_200DMA', 'Rare alert', 'c', 'm',
                    'b', 'u', now() - interval '1 year')
            ON CONFLICT DO NOTHING""",
            user,
            rare_ticker(bench),
            PREVIOUS,
        )
        await conn.execute("ANALYZE alert_history")
    finally:
        await conn.close()


async def measure_alerts_page(bench: Bench) -> None:
    """4: page one of `alerts` for a user with 10,000 alerts, after filtered calls (cache off)."""
    user = bench.alerts_user
    await seed_user_alerts(bench, user, bench.args.user_alerts)
    url = await server(bench, "uncached", "0")
    filtered: list[dict[str, Any]] = [
        {},
        {"ticker": stock_ticker(3)},
        {"unread": True},
        {"type": "TREND_BREAK"},
        {"ticker": stock_ticker(5), "unread": False},
        {"type": "VALUATION_REGIME_CHANGE", "unread": True},
    ]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def call(variables: dict[str, Any], who: int = user) -> float:
            began = time.perf_counter()
            response = await http.post(
                f"{url}/graphql",
                json={"query": ALERTS_QUERY, "variables": {"first": 20, **variables}},
                headers=bearer(who),
            )
            elapsed = time.perf_counter() - began
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise RuntimeError(f"alerts answered {response.status_code}: {str(body)[:300]}")
            return elapsed

        # Enough rounds that every pooled connection has run each variant 6+ times.
        for _ in range(bench.args.filtered_rounds):
            for variables in filtered:
                await call(variables)
        times = [await call({}) for _ in range(9)]
        # A filtered first page too: a generic plan chosen meanwhile can make it walk the
        # user's whole history (the unfiltered page then still looks fine).
        by_ticker = [await call({"ticker": rare_ticker(bench)}) for _ in range(9)]
        # The same request for a user with no alerts: what HTTP and GraphQL cost by themselves.
        floor = statistics.median([await call({}, bench.reader_user) for _ in range(9)]) * 1000
    for label, timed in (
        ("page one", times),
        (f"page one of ticker {rare_ticker(bench)}", by_ticker),
    ):
        median, worst = statistics.median(timed) * 1000, max(timed) * 1000
        bench.add(
            f"4. alerts {label} ({bench.args.user_alerts:,} alerts, after filtered calls)",
            f"median {median:.1f} ms, max {worst:.1f} ms (HTTP round trip, "
            f"{median - floor:+.1f} ms over the {floor:.1f} ms of a user with none)",
            "<= 5 ms",
            median <= 5,
        )


# --- 5. outbox claim beside another channel's backlog ----------------------------------------


async def claim_webhooks_once(dsn: str) -> tuple[float, int]:
    """One webhook claim through the deliverer's own function: (seconds, rows claimed).

    The only internal import of this benchmark: adapt here if the outbox API changes.
    """
    from services.db import create_pool
    from services.delivery.channels.webhook import WebhookChannel
    from services.delivery.outbox import claim

    channel = WebhookChannel()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await claim(pool, channel, "bench-warmup", lease_seconds=0.001, limit=1)
        await asyncio.sleep(0.01)
        began = time.perf_counter()
        rows = await claim(pool, channel, "bench", lease_seconds=60, limit=10)
        return time.perf_counter() - began, len(rows)
    finally:
        await pool.close()


async def measure_outbox(bench: Bench) -> None:
    """5: claim due webhook rows while 300,000 email rows are pending and due."""
    pending = bench.args.pending_emails
    conn = await connect(bench.dsn)
    try:
        emailed = await conn.fetch(
            "SELECT id FROM users WHERE email IS NOT NULL ORDER BY id LIMIT $1",
            max(1, pending // 10),
        )
        ids = [row["id"] for row in emailed]
        per_user = math.ceil(pending / len(ids))
        began = time.perf_counter()
        # The backlog is scenery, written with triggers off: row-by-row commit-order and cache
        # triggers would make a 300,000-alert statement take many minutes.
        await conn.execute("SET session_replication_role = replica")
        for first in range(0, len(ids), 5000):
            await conn.execute(
                """
                WITH a AS (
                    INSERT INTO alert_history (user_id, entity_id, alert_type, as_of,
                        previous_state, new_state, headline, what_changed, why_it_matters,
                        before_vs_now, what_didnt_change, sent_at)
                    SELECT u, md5('s' || 'S' || lpad((1 + k)::text, 5, '0'))::uuid,
                           'fundamental_inflection', $3::date - 40, 'IMPROVING',
                           'DETERIORATING', 'Backlog alert', 'changed', 'matters', 'b', 'u',
                           now() - interval '2 days'
                    FROM unnest($1::uuid[]) AS u, generate_series(0, $2::int - 1) AS k
                    RETURNING id, user_id
                )
                INSERT INTO deliveries (user_id, alert_id, channel, next_attempt_at, created_at)
                SELECT user_id, id, 'email', now() - interval '1 day', now() - interval '1 day'
                FROM a""",
                ids[first : first + 5000],
                per_user,
                EVALUATED,
            )
        await conn.execute("RESET session_replication_role")
        hook_user = user_id(bench.webhook_user)
        endpoint = await conn.fetchval(
            """INSERT INTO webhook_endpoints (user_id, url, secret)
               VALUES ($1, 'http://127.0.0.1:9/bench-hook', 'whsec_YmVuY2gtc2VjcmV0LWJlbmNo')
               RETURNING id""",
            hook_user,
        )
        await conn.execute(
            """
            WITH a AS (
                INSERT INTO alert_history (user_id, entity_id, alert_type, as_of,
                    previous_state, new_state, headline, what_changed, why_it_matters,
                    before_vs_now, what_didnt_change)
                SELECT $1::uuid, md5('s' || 'S' || lpad((1 + k)::text, 5, '0'))::uuid,
                       'trend_break',
                       $3::date, 'ABOVE_200DMA', 'BELOW_200DMA', 'Hook alert', 'c', 'm', 'b', 'u'
                FROM generate_series(0, 99) AS k
                RETURNING id
            )
            INSERT INTO deliveries (user_id, alert_id, channel, webhook_id, next_attempt_at)
            SELECT $1::uuid, id, 'webhook', $2::uuid, now() FROM a""",
            hook_user,
            endpoint,
            EVALUATED,
        )
        await conn.execute("VACUUM ANALYZE deliveries")
        backlog = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE channel = 'email' AND status = 'pending'"
        )
        print(
            f"  outbox: {backlog:,} pending email rows ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    finally:
        await conn.close()
    times = []
    for _ in range(5):
        seconds, claimed = await claim_webhooks_once(bench.dsn)
        if claimed == 0:
            raise RuntimeError("the webhook claim returned no rows")
        times.append(seconds)
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    bench.add(
        f"5. webhook claim beside {backlog:,} pending emails",
        f"median {median:.1f} ms, max {worst:.1f} ms",
        "<= 10 ms",
        median <= 10,
    )


# --- 6. one user's cache hit ratio while others write ----------------------------------------


def cache_counts(text: str) -> tuple[float, float]:
    """(hits, misses) of the response cache from /metrics."""
    counts = {"hit": 0.0, "miss": 0.0}
    for outcome, value in re.findall(
        r'^mc_response_cache_total\{[^}]*="(hit|miss)"[^}]*\}\s+([\d.e+]+)$', text, re.M
    ):
        counts[outcome] += float(value)
    return counts["hit"], counts["miss"]


async def measure_hit_ratio(bench: Bench) -> None:
    """6: the reader's hit ratio while writers do 50 mutations/s and an evaluation commits."""
    args = bench.args
    url = await server(bench, "cached", "64")
    reader = bearer(bench.reader_user)
    writers = [bench.first_writer + k for k in range(20)]
    tokens = {n: bearer(n) for n in writers}
    # Stocks neither the reader shows nor the writers hold: what the writers toggle.
    toggled = {n: stock_ticker(101 + k) for k, n in enumerate(writers)}
    first = max(121, args.stocks // 8)  # past the reader's (21-40) and the writers' (101-120)
    evaluated = [stock_ticker(r) for r in range(first, min(args.stocks, first + 299) + 1)]
    stop = asyncio.Event()
    header_hits = header_total = header_seen = mutations = mutation_errors = 0

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=40)) as http:

        async def read() -> str:
            response = await http.post(
                f"{url}/graphql", json={"query": WATCHLIST_QUERY}, headers=reader
            )
            if response.status_code != 200 or b'"errors"' in response.content:
                raise RuntimeError(f"reader got {response.status_code}: {response.text[:200]}")
            return response.headers.get("cache-status", "")

        async def write_loop(n: int, interval: float) -> None:
            nonlocal mutations, mutation_errors
            adding = True
            while not stop.is_set():
                began = time.perf_counter()
                name = "addStock" if adding else "removeStock"
                selection = " { addedAt }" if adding else ""
                query = f'mutation {{ {name}(ticker: "{toggled[n]}"){selection} }}'
                response = await http.post(
                    f"{url}/graphql", json={"query": query}, headers=tokens[n]
                )
                mutations += 1
                if response.status_code != 200 or b'"errors"' in response.content:
                    mutation_errors += 1
                adding = not adding
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))

        await read()  # warm the entry
        quiet = cache_counts((await http.get(f"{url}/metrics")).text)
        for _ in range(20):
            await read()
        before = cache_counts((await http.get(f"{url}/metrics")).text)
        quiet_ratio = (before[0] - quiet[0]) / max(1.0, sum(before) - sum(quiet))
        interval = len(writers) / args.mutation_rate
        tasks = [asyncio.create_task(write_loop(n, interval)) for n in writers]
        evaluation = asyncio.create_task(
            run_cli(
                bench,
                [
                    "ingest",
                    "evaluate",
                    "--as-of",
                    EVALUATED.isoformat(),
                    "--tickers",
                    ",".join(evaluated),
                ],
                args.hit_seconds + 60,
            )
        )
        began = time.perf_counter()
        try:
            while time.perf_counter() - began < args.hit_seconds:
                status = await read()
                header_total += 1
                header_seen += bool(status)
                header_hits += "; hit" in status
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        seconds = time.perf_counter() - began
        after = cache_counts((await http.get(f"{url}/metrics")).text)
        code, eval_seconds, _ = await evaluation
    hits, misses = after[0] - before[0], after[1] - before[1]
    if header_seen:
        ratio = header_hits / max(1, header_total)
        source = "Cache-Status"
    else:
        ratio = hits / max(1.0, hits + misses)
        source = "/metrics"
    bench.add(
        "6. reader's cache hit ratio",
        f"{100 * ratio:.1f} % of {header_total} reads (quiet: {100 * quiet_ratio:.0f} %; "
        f"{source}; {mutations / seconds:.0f} "
        f"mutations/s, {mutation_errors} failed; evaluation of {len(evaluated)} stocks "
        f"{f'done in {eval_seconds:.0f} s' if code == 0 else 'did not finish'})",
        ">= 99 %",
        ratio >= 0.99,
    )


# --- main ------------------------------------------------------------------------------------

MEASUREMENTS: dict[int, tuple[str, Callable[[Bench], Awaitable[None]]]] = {
    1: ("state change at W watchers", measure_bursts),
    2: ("full daily evaluation", measure_daily),
    3: ("watchlist p99 uncached", measure_watchlist),
    4: ("alerts page one after filtered calls", measure_alerts_page),
    5: ("outbox claim beside another channel", measure_outbox),
    6: ("cache hit ratio under others' writes", measure_hit_ratio),
}


def print_table(bench: Bench) -> None:
    rows = [("figure", "measured", "target", "ok?")] + [
        (r.figure, r.measured, r.target, "-" if r.ok is None else ("yes" if r.ok else "NO"))
        for r in bench.rows
    ]
    widths = [min(70, max(len(row[i]) for row in rows)) for i in range(4)]
    print()
    for k, row in enumerate(rows):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if k == 0:
            print("-+-".join("-" * w for w in widths))


async def run(args: argparse.Namespace) -> None:
    server_dsn = args.dsn or os.environ.get("DATABASE_URL") or DEFAULT_DSN
    name = f"mc_bench_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    root = Path(tempfile.mkdtemp(prefix="mc-scale-"))
    bench = Bench(args, server_dsn, dsn_with_database(server_dsn, name), name, root)
    print(
        f"scale bench: database {name}, store {root}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        code, _, output = await run_cli(bench, ["migrations", "up"], 300)
        if code != 0:
            raise SystemExit(f"migrations failed: {output}")
        await load_templates(bench)
        await generate(bench)
        for number in args.only:
            title, measure = MEASUREMENTS[number]
            print(f"\n{number}. {title} (load average {os.getloadavg()[0]:.1f})", flush=True)
            try:
                await asyncio.wait_for(measure(bench), args.measurement_timeout)
            except Exception as exc:  # one failed figure must not stop the rest
                reason = (
                    "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                )
                bench.add(f"{number}. {title}", f"FAIL ({reason[:200]})", "-", False)
        print_table(bench)
    finally:
        stop_servers(bench)
        if args.keep:
            print(f"kept database {name} and store {root}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(root, ignore_errors=True)
        await admin.close()


def number_list(raw: str) -> list[int]:
    values = [int(part) for part in raw.split(",") if part.strip()]
    if not values or any(v not in MEASUREMENTS for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers from 1 to {len(MEASUREMENTS)}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", help=f"server to create the scratch database on ({DEFAULT_DSN})")
    parser.add_argument("--only", type=number_list, default=list(MEASUREMENTS), help="e.g. 1,3")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and store")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--stocks", type=int, default=8_000)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--top-watchers", type=int, default=0, help="default 30 %% of --users")
    parser.add_argument("--change-every", type=int, default=100, help="1 in N stocks changes")
    parser.add_argument("--email-share", type=float, default=0.3, help="users with an email")
    parser.add_argument("--webhook-share", type=float, default=0.02, help="users with a webhook")
    parser.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 20_000, 40_000, 80_000],
    )
    parser.add_argument("--step-timeout", type=float, default=120.0, help="cap per W step (s)")
    parser.add_argument("--eval-timeout", type=float, default=900.0, help="cap of the full run (s)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--user-alerts", type=int, default=10_000)
    parser.add_argument("--filtered-rounds", type=int, default=20)
    parser.add_argument("--pending-emails", type=int, default=300_000)
    parser.add_argument("--mutation-rate", type=float, default=50.0, help="others' mutations/s")
    parser.add_argument("--hit-seconds", type=float, default=20.0)
    parser.add_argument("--measurement-timeout", type=float, default=1800.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
