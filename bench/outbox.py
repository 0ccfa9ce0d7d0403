"""The outbox at scale: each channel's claim beside 300,000 pending rows of the other channel.

    .venv/bin/python bench/outbox.py [--rows 300000] [--repeat 50]

On a scratch database (TEST_DATABASE_URL / DATABASE_URL, else the embedded server; dropped
afterwards): `--rows` alerts over `--rows / 3` users, each user with an email address and one
webhook endpoint, so every alert has an email and a webhook delivery. The seed is bulk SQL with
the tables' triggers off (what is measured is the claims, not the seeding). Then:

- webhook claim: every email row pending and due, 1,000 webhook rows pending (the rest delivered);
- email claim: every webhook row pending and due, 1,000 email rows pending (the rest delivered);
- enqueue_for_alerts for chunks of 1,250 / 2,500 / 5,000 new alerts (time should double with
  the chunk).

Each claim runs `--repeat` times in a transaction that is rolled back (so each finds the same
rows); prints p50 / max milliseconds, the target (≤ 10 ms) and the indexes the plan reads.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scratch import scratch_database, server_dsn
from services.delivery import outbox
from services.delivery.channels.email import EmailChannel
from services.delivery.channels.webhook import WebhookChannel

TARGET_MS = 10.0
BATCH = 50

SEED = """
INSERT INTO users (id, email, email_digest)
SELECT gen_random_uuid(), 'u' || i || '@example.com', 'immediate' FROM generate_series(1, $1) i;
"""
SEED_ENDPOINTS = """
INSERT INTO webhook_endpoints (user_id, url, secret)
SELECT id, 'https://hooks.example.com/' || id, 'whsec_bench' FROM users
"""
SEED_ALERTS = """
INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, headline,
    what_changed, why_it_matters, before_vs_now, what_didnt_change, commit_seq)
SELECT u.id, $1, 'trend_break', date '2024-01-01' + d, 'BELOW_200DMA', 'h', 'w', 'y', 'b', 'n',
    nextval('alert_commit_seq')
FROM users u CROSS JOIN generate_series(0, $2 - 1) d
"""
SEED_DELIVERIES = """
INSERT INTO deliveries (user_id, alert_id, channel, webhook_id, next_attempt_at)
SELECT a.user_id, a.id, 'email', NULL, now() - random() * interval '1 hour' FROM alert_history a
UNION ALL
SELECT a.user_id, a.id, 'webhook', w.id, now() - random() * interval '1 hour'
FROM alert_history a JOIN webhook_endpoints w ON w.user_id = a.user_id
"""
# `$2` alerts of as many users, a day after the seeded ones (the commit-order trigger is
# on here: the order is what the evaluation pays too).
NEW_ALERTS = """
INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, headline,
    what_changed, why_it_matters, before_vs_now, what_didnt_change)
SELECT u.id, $1, 'trend_break', date '2025-01-01', 'BELOW_200DMA', 'h', 'w', 'y', 'b', 'n'
FROM (SELECT id FROM users ORDER BY id LIMIT $2) u
RETURNING id
"""
# All rows of `$1` pending, all but 1,000 of the other channel delivered.
SHAPE = """
UPDATE deliveries SET
    status = CASE WHEN channel = $1 OR id IN (
        SELECT id FROM deliveries WHERE channel <> $1 ORDER BY id LIMIT 1000)
        THEN 'pending' ELSE 'delivered' END,
    delivered_at = CASE WHEN channel = $1 THEN NULL ELSE now() END
"""


async def seed(conn: asyncpg.Connection, rows: int) -> None:
    users = max(1, rows // 3)
    for table in ("users", "alert_history", "deliveries", "webhook_endpoints"):
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    await conn.execute(SEED, users)
    await conn.execute(SEED_ENDPOINTS)
    entity = await conn.fetchval(
        "INSERT INTO entities (ticker, name) VALUES ('BENCH', 'Bench Corp') RETURNING id"
    )
    await conn.execute(SEED_ALERTS, entity, 3)
    await conn.execute(SEED_DELIVERIES)
    for table in ("users", "alert_history", "deliveries", "webhook_endpoints"):
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


async def shape(conn: asyncpg.Connection, pending_channel: str) -> None:
    await conn.execute("ALTER TABLE deliveries DISABLE TRIGGER USER")
    await conn.execute(SHAPE, pending_channel)
    await conn.execute("ALTER TABLE deliveries ENABLE TRIGGER USER")
    await conn.execute("VACUUM ANALYZE deliveries")


async def timed(
    conn: asyncpg.Connection, sql: str, args: Sequence[Any], repeat: int
) -> list[float]:
    """Milliseconds of `repeat` runs, each rolled back; the statement is prepared once."""
    statement = await conn.prepare(sql)
    times = []
    for _ in range(repeat):
        transaction = conn.transaction()
        await transaction.start()
        started = time.perf_counter()
        await statement.fetch(*args)
        times.append((time.perf_counter() - started) * 1000)
        await transaction.rollback()
    return times


async def indexes(conn: asyncpg.Connection, sql: str, args: Sequence[Any]) -> list[str]:
    """The indexes the (generic) plan reads deliveries through."""
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    rows = await conn.fetch("EXPLAIN " + sql, *args)
    await transaction.rollback()
    text = "\n".join(r[0] for r in rows)
    found = re.findall(r"using (\w+) on deliveries|Bitmap Index Scan on (deliveries\w*)", text)
    used = sorted({a or b for a, b in found})
    if "Seq Scan on deliveries" in text:
        used.append("SEQ SCAN")
    return used


def line(name: str, times: list[float], used: list[str]) -> str:
    p50, worst = statistics.median(times), max(times)
    verdict = "ok" if p50 <= TARGET_MS else "OVER"
    return (
        f"{name:<44} p50 {p50:7.2f} ms  max {worst:7.2f} ms  target <= {TARGET_MS:.0f} ms "
        f"[{verdict}]  reads {', '.join(used)}"
    )


async def enqueue_times(conn: asyncpg.Connection, chunks: Sequence[int]) -> list[str]:
    """Time enqueue_for_alerts for new alerts (inserted, then everything rolled back)."""
    lines = []
    entity = await conn.fetchval("SELECT id FROM entities WHERE ticker = 'BENCH'")
    for size in chunks:
        transaction = conn.transaction()
        await transaction.start()
        ids = [r["id"] for r in await conn.fetch(NEW_ALERTS, entity, size)]
        started = time.perf_counter()
        await outbox.enqueue_for_alerts(conn, ids)
        elapsed = (time.perf_counter() - started) * 1000
        await transaction.rollback()
        lines.append(
            f"enqueue_for_alerts, {size:>5} alerts (2 rows each)  {elapsed:8.1f} ms  "
            f"{elapsed / size * 1000:6.1f} µs per alert"
        )
    return lines


async def run(args: argparse.Namespace) -> None:
    async with scratch_database(server_dsn(), "mc_bench_outbox") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            started = time.perf_counter()
            await seed(conn, args.rows)
            print(
                f"seeded {args.rows} alerts x 2 channels in {time.perf_counter() - started:.0f} s"
            )
            webhook_args = ("bench", 60, BATCH)
            email_args = ("bench", 60, BATCH)

            await shape(conn, "email")
            webhook = await timed(conn, WebhookChannel.claim_sql, webhook_args, args.repeat)
            used = await indexes(conn, WebhookChannel.claim_sql, webhook_args)
            others = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE channel = 'email' AND status = 'pending'"
            )
            print(line(f"webhook claim of {BATCH} beside {others} pending emails", webhook, used))

            await shape(conn, "webhook")
            email = await timed(conn, EmailChannel.claim_sql, email_args, args.repeat)
            used = await indexes(conn, EmailChannel.claim_sql, email_args)
            others = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'pending'"
            )
            print(line(f"email claim of {BATCH} users beside {others} webhooks", email, used))

            for text in await enqueue_times(conn, (1250, 2500, 5000)):
                print(text)
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
