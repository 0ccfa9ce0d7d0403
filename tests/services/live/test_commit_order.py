"""The commit-order trigger (migration 0006) against a real PostgreSQL: no deadlock at commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
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
    """Both take the commit-order lock before any cache counter, whatever they wrote first.

    `early` notes cache scopes before inserting its alert, so its counter flush is queued
    before its commit_seq assignment; `late` inserts its alert first. A third transaction
    holds the 'public' counter while both commit, so `early` waits for it first: were it not
    holding the commit-order lock by then, `late` would take that lock, then queue behind
    `early` for the counter, while `early` got the counter and waited for the lock.
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
        late_alert = await insert_alert_in(late, user, entities[2], date(1990, 1, 2))
        await late.execute(watch, user, entities[3])

        commits: list[asyncio.Task[None]] = []
        for tx in (early_tx, late_tx):
            commits.append(asyncio.create_task(_commit(tx.commit())))
            await wait_for_lock_waiters(pool, len(commits))
        await hold.rollback()
        await asyncio.wait_for(asyncio.gather(*commits), 15)
    finally:
        for conn in conns:
            await conn.close()
    seqs = await pool.fetch(
        "SELECT id, commit_seq FROM alert_history WHERE id = ANY($1::uuid[]) ORDER BY commit_seq",
        [early_alert["id"], late_alert["id"]],
    )
    assert [r["id"] for r in seqs] == [early_alert["id"], late_alert["id"]]


async def _commit(commit: Awaitable[None]) -> None:
    await commit
