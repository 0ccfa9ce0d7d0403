"""The alerts' commit-order lock (migration 0008) against a real PostgreSQL: no deadlock."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import asyncpg

from services.cache_versions import user_scope
from tests.fixtures.ws import insert_alert_in, make_entity, make_user


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} transactions wait on a lock")


async def test_alert_writers_never_deadlock_with_the_cache_counters_at_commit(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """The commit-order lock is taken at the alert insert, before any cache counter.

    `early` holds the lock from its insert; a third transaction holds the user's counter, so
    `early` waits for it at commit while `late` waits for the lock at its insert. Nobody
    waits for a lock held by someone waiting on them: once the counter is free both commit,
    `early` numbered first.
    """
    user = await make_user(pool)
    entities = [await make_entity(pool) for _ in range(4)]
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    blocker, early, late = conns
    try:
        hold = blocker.transaction()
        await hold.start()
        await blocker.execute(
            "SELECT 1 FROM cache_versions WHERE scope = $1 FOR UPDATE", user_scope(user)
        )
        early_tx, late_tx = early.transaction(), late.transaction()
        await early_tx.start()
        await late_tx.start()
        watch = "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)"
        await early.execute(watch, user, entities[0])
        early_alert = await insert_alert_in(early, user, entities[1], date(1990, 1, 1))
        await late.execute(watch, user, entities[3])

        async def late_writer() -> asyncpg.Record:
            row = await insert_alert_in(late, user, entities[2], date(1990, 1, 2))
            await late_tx.commit()
            return row

        late_task = asyncio.create_task(late_writer())
        await wait_for_lock_waiters(pool, 1)
        early_commit = asyncio.create_task(early_tx.commit())
        await wait_for_lock_waiters(pool, 2)
        await hold.rollback()
        await asyncio.wait_for(early_commit, 15)
        late_alert = await asyncio.wait_for(late_task, 15)
    finally:
        for conn in conns:
            await conn.close()
    seqs = await pool.fetch(
        "SELECT id, commit_seq FROM alert_history WHERE id = ANY($1::uuid[]) ORDER BY commit_seq",
        [early_alert["id"], late_alert["id"]],
    )
    assert [r["id"] for r in seqs] == [early_alert["id"], late_alert["id"]]
