"""Webhook and Web Push delivery latency: alerts committed while `deliver --follow` runs.

    .venv/bin/python bench/delivery.py [--alerts 1000] [--endpoints 200] [--batch 20]
                                       [--workers 8] [--channel webhook|push]
                                       [--subscriptions 1000]

On a scratch database (TEST_DATABASE_URL / DATABASE_URL, else the embedded server; dropped
afterwards): `--endpoints` users, each with one webhook endpoint on a receiver process on
loopback (a minimal asyncio HTTP server answering 204 and recording when each `webhook-id`
arrived). `python -m ingest deliver --follow` runs as its own process. Alerts are committed
`--batch` per transaction, as the evaluator writes them (alert rows, their outbox rows and a
NOTIFY in one commit), spread over the users. Prints deliveries/s, the latency from each
alert's commit to its receipt (p50/p99/max), lost or duplicated deliveries, and the
deliverer's CPU time per delivery and RSS. Target: p99 < 2 s. Numbers only; nothing is
asserted.

`--channel push`: `--subscriptions` users, each with one Web Push subscription (its own P-256
key pair and auth secret) on a push service process on loopback that answers 201 and records
when each message arrived and its encrypted body; after the run each body is decrypted with
its subscription's key to learn which alert it carried, so the latency is from that alert's
commit to the receipt of its encrypted, VAPID-signed message. (The push service of the tests,
tests/fakes/push_service.py, also verifies the JWT; this one only records, so the deliverer is
what is measured.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench._scratch import scratch_database, server_dsn
from services.delivery import outbox

ROOT = Path(__file__).resolve().parent.parent

# A receiver that does as little as possible per request, so the deliverer is what is measured.
RECEIVER = r"""
import asyncio, sys, time
out = open(sys.argv[1], "w", buffering=1)

class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            headers = dict(
                line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
            )
            length = int(headers.get(b"content-length", b"0"))
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            out.write(f"{headers[b'webhook-id'].decode()} {time.time()}\n")
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")

async def main():
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

# The push service: 201 for every message; each arrival's path, time and body (hex) recorded.
PUSH_SERVICE = r"""
import asyncio, sys, time
out = open(sys.argv[1], "w", buffering=1)

class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
            length = int(headers.get(b"content-length", b"0"))
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            path = lines[0].split(b" ")[1].decode()
            out.write(f"{path} {time.time()} {rest[:length].hex()}\n")
            self.transport.write(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")

async def main():
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def seed_push(
    dsn: str, subscriptions: int, port: int
) -> tuple[list[uuid.UUID], uuid.UUID, dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]]]:
    """Users with one push subscription each; returns (users, entity, keys by endpoint path)."""
    users = [uuid.uuid4() for _ in range(subscriptions)]
    keys = {
        f"/push/{i}": (ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        for i in range(subscriptions)
    }
    points = [
        _b64url(
            private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        for private, _ in keys.values()
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users (id, email_digest) SELECT u, 'off' FROM unnest($1::uuid[]) u", users
        )
        await conn.execute(
            "INSERT INTO push_subscriptions (user_id, slot, endpoint, p256dh, auth) "
            "SELECT u, 1, format('http://127.0.0.1:%s%s', $2::int, path), p, a "
            "FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[]) AS x(u, path, p, a)",
            users,
            port,
            list(keys),
            points,
            [_b64url(auth) for _, auth in keys.values()],
        )
        entity: uuid.UUID = await conn.fetchval(
            "INSERT INTO entities (ticker, name) VALUES ('BENCH', 'Bench Corp') RETURNING id"
        )
        return users, entity, keys
    finally:
        await conn.close()


def push_arrivals(
    lines: list[str], keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]]
) -> list[tuple[str, float]]:
    """(delivery key "alertId path", arrival time) of each message, decrypted as a browser would."""
    arrivals = []
    for line in lines:
        path, moment, body = line.split()
        private, auth = keys[path]
        payload = http_ece.decrypt(
            bytes.fromhex(body), private_key=private, auth_secret=auth, version="aes128gcm"
        )
        arrivals.append((f"{json.loads(payload)['alertId']} {path}", float(moment)))
    return arrivals


async def seed(dsn: str, endpoints: int, port: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    """Users, one endpoint each, and one entity; returns (user ids, entity id)."""
    conn = await asyncpg.connect(dsn)
    try:
        users = [uuid.uuid4() for _ in range(endpoints)]
        await conn.execute(
            "INSERT INTO users (id, email_digest) SELECT u, 'off' FROM unnest($1::uuid[]) u", users
        )
        await conn.execute(
            "INSERT INTO webhook_endpoints (user_id, url, secret) "
            "SELECT u, format('http://127.0.0.1:%s/hook/%s', $2::int, i), $3 "
            "FROM unnest($1::uuid[]) WITH ORDINALITY AS x(u, i)",
            users,
            port,
            "whsec_" + "a" * 43 + "=",
        )
        entity: uuid.UUID = await conn.fetchval(
            "INSERT INTO entities (ticker, name) VALUES ('BENCH', 'Bench Corp') RETURNING id"
        )
        return users, entity
    finally:
        await conn.close()


async def commit_alerts(
    dsn: str,
    users: list[uuid.UUID],
    entity: uuid.UUID,
    count: int,
    batch: int,
    first_day: int = 0,
) -> dict[uuid.UUID, float]:
    """Commit `count` alerts, `batch` per transaction; returns each alert's commit time."""
    committed: dict[uuid.UUID, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, count, batch):
            owners = [users[i % len(users)] for i in range(start, min(start + batch, count))]
            days = [first_day + i // len(users) for i in range(start, start + len(owners))]
            async with conn.transaction():
                ids = [
                    row["id"]
                    for row in await conn.fetch(
                        "INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, "
                        "new_state, headline, what_changed, why_it_matters, before_vs_now, "
                        "what_didnt_change) SELECT u, $2, 'trend_break', "
                        "date '2024-01-01' + d, 'BELOW_200DMA', 'BENCH broke its trend', "
                        "'It crossed.', 'Trends persist.', 'Above, now below.', 'Nothing else.' "
                        "FROM unnest($1::uuid[], $3::int[]) AS x(u, d) RETURNING id",
                        owners,
                        entity,
                        days,
                    )
                ]
                await outbox.enqueue_for_alerts(conn, ids)
                await conn.execute(
                    "SELECT pg_notify('alert_created', id::text) FROM unnest($1::uuid[]) id", ids
                )
            now = time.time()
            committed.update(dict.fromkeys(ids, now))
            await asyncio.sleep(0.05)  # a steady stream rather than one burst
    finally:
        await conn.close()
    return committed


async def listening(dsn: str) -> None:
    """Wait until the deliverer has issued its LISTEN (a fixed sleep is short on a busy host)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            ):
                await asyncio.sleep(0.5)  # its first pass (an empty outbox) done
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the deliverer did not start listening")
    finally:
        await conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    async with scratch_database(server_dsn(), "mc_bench_delivery") as dsn:
        workdir = Path(tempfile.mkdtemp(prefix="mc-delivery-bench-"))
        received_path = workdir / "received.txt"
        push = args.channel == "push"
        receiver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUSH_SERVICE if push else RECEIVER,
            str(received_path),
            stdout=asyncio.subprocess.PIPE,
        )
        assert receiver.stdout is not None
        port = int((await receiver.stdout.readline()).decode())
        keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}
        if push:
            users, entity, keys = await seed_push(dsn, args.subscriptions, port)
        else:
            users, entity = await seed(dsn, args.endpoints, port)
        env = {**os.environ, "DATABASE_URL": dsn, "DATA_DIR": str(workdir), "LOG_LEVEL": "WARNING"}
        deliverer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingest",
            "deliver",
            "--follow",
            "--workers",
            str(args.workers),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        try:
            await listening(dsn)  # imports done, LISTEN issued
            # One alert sent and received first: what a deliverer pays once (its first pass,
            # a channel's lazy imports, the first connections) is not in the figures.
            warmup = await commit_alerts(dsn, users[:1], entity, 1, 1, first_day=100_000)
            for _ in range(600):
                if received_path.read_text():
                    break
                await asyncio.sleep(0.1)
            process = psutil.Process(deliverer.pid)
            cpu_before = process.cpu_times()
            started = time.time()
            committed = await commit_alerts(dsn, users, entity, args.alerts, args.batch)
            deadline = time.monotonic() + 120
            lines: list[str] = []
            while time.monotonic() < deadline:
                lines = received_path.read_text().splitlines()
                if len(lines) >= args.alerts + len(warmup):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # late duplicates would show up here
            lines = received_path.read_text().splitlines()
            cpu_after = process.cpu_times()
            rss = process.memory_info().rss
        finally:
            deliverer.send_signal(signal.SIGTERM)
            await deliverer.wait()
            receiver.kill()
            await receiver.wait()
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT d.id, d.alert_id, s.endpoint FROM deliveries d "
                "LEFT JOIN push_subscriptions s ON s.id = d.push_subscription_id"
            )
        finally:
            await conn.close()
    rows = [r for r in rows if r["alert_id"] not in warmup]
    if push:
        # A push message names no delivery: its (alert, subscription) does.
        alert_of = {f"{r['alert_id']} {urlsplit(r['endpoint']).path}": r["alert_id"] for r in rows}
        arrivals = [(key, str(moment)) for key, moment in push_arrivals(lines, keys)]
    else:
        alert_of = {str(r["id"]): r["alert_id"] for r in rows}
        arrivals = [(a, b) for a, b in (line.split() for line in lines)]
    arrivals = [(key, moment) for key, moment in arrivals if key in alert_of]  # not the warm-up
    counts = Counter(webhook_id for webhook_id, _ in arrivals)
    first_arrival: dict[str, float] = {}
    for webhook_id, moment in arrivals:
        first_arrival.setdefault(webhook_id, float(moment))
    latencies = [first_arrival[d] - committed[alert_of[d]] for d in first_arrival if d in alert_of]
    lost = len(alert_of) - len(first_arrival)
    duplicates = sum(n - 1 for n in counts.values())
    span = max(first_arrival.values()) - started if first_arrival else float("nan")
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    delivered = max(len(first_arrival), 1)
    print(
        json.dumps(
            {
                "channel": args.channel,
                "alerts": args.alerts,
                "targets": args.subscriptions if push else args.endpoints,
                "workers": args.workers,
                "delivered": len(first_arrival),
                "lost": lost,
                "duplicates": duplicates,
                "deliveries_per_s": round(len(first_arrival) / span, 1),
                "latency_ms_p50": round(1000 * percentile(latencies, 0.50), 1),
                "latency_ms_p99": round(1000 * percentile(latencies, 0.99), 1),
                "latency_ms_max": round(1000 * max(latencies), 1),
                "deliverer_cpu_ms_per_delivery": round(1000 * cpu / delivered, 2),
                "deliverer_rss_mb": round(rss / 2**20, 1),
                "target": "p99 < 2000 ms",
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--channel", choices=("webhook", "push"), default="webhook")
    parser.add_argument(
        "--subscriptions", type=int, default=1000, help="push: users with one subscription each"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
