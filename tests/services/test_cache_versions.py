"""Counter reads for the response cache: concurrent readers share statements, none reads stale."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from services.cache_versions import (
    POPULARITY,
    PUBLIC,
    SCOPE_SEPARATOR,
    STOCKS,
    CoalescingReader,
    read,
    settled_versions,
    stock_scope,
    user_scope,
    watchers_scope,
)


class CountingPool:
    """The real pool, counting the statements the reader sends through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0
        self.sent = asyncio.Event()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        self.sent.set()
        return await self.pool.fetch(query, *args)


async def bump(pool: asyncpg.Pool, scope: str) -> None:
    await pool.execute(
        "INSERT INTO cache_versions (scope, version) VALUES ($1, 1) "
        "ON CONFLICT (scope) DO UPDATE SET version = cache_versions.version + 1",
        scope,
    )


def test_no_scope_name_holds_the_separator_of_the_version_read() -> None:
    some = uuid.uuid4()
    names = [PUBLIC, STOCKS, *POPULARITY, user_scope(some), stock_scope(some), watchers_scope(some)]
    assert [name for name in names if SCOPE_SEPARATOR in name or not name] == []


async def test_a_read_returns_each_scopes_version_in_order_and_zero_for_unknown_ones(
    pool: asyncpg.Pool,
) -> None:
    scopes = [stock_scope(uuid.uuid4()) for _ in range(120)]
    for index, scope in enumerate(scopes[:60]):
        for _ in range(index % 3 + 1):
            await bump(pool, scope)
    expected = tuple(index % 3 + 1 for index in range(60)) + (0,) * 60
    assert await read(pool, scopes) == expected
    assert await read(pool, list(reversed(scopes))) == tuple(reversed(expected))
    assert await read(pool, []) == ()


async def test_readers_of_one_event_loop_turn_share_one_statement(pool: asyncpg.Pool) -> None:
    await bump(pool, "user:a")
    counting = CountingPool(pool)
    reader = CoalescingReader(counting)
    answers = await asyncio.gather(
        *(reader.read([PUBLIC, f"user:{name}"]) for name in "abcdefghij" * 3)
    )
    assert counting.statements == 1
    assert answers[0] == (0, 1)  # public never bumped here; user:a once
    assert set(answers[1:10]) == {(0, 0)}
    assert answers[10] == answers[0]
    # The next turn's readers get a statement of their own.
    assert await reader.read(["user:a"]) == (1,)
    assert counting.statements == 2


async def test_a_reader_never_joins_a_statement_already_sent(pool: asyncpg.Pool) -> None:
    """Read-after-write: a write committed before a read is seen, even mid-batch."""
    counting = CountingPool(pool)
    reader = CoalescingReader(counting)
    early = asyncio.create_task(reader.read([PUBLIC]))
    await counting.sent.wait()  # the early batch has been sent
    await bump(pool, PUBLIC)
    late = await reader.read([PUBLIC])
    assert late == (1,)
    assert await early in {(0,), (1,)}
    assert counting.statements == 2


async def test_one_cancelled_reader_does_not_fail_its_neighbours(pool: asyncpg.Pool) -> None:
    reader = CoalescingReader(pool)
    doomed = asyncio.create_task(reader.read([PUBLIC]))
    survivor = asyncio.create_task(reader.read([PUBLIC, "user:x"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await survivor == (0, 0)
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_failed_statement_fails_every_reader_of_its_batch(pool: asyncpg.Pool) -> None:
    reader = CoalescingReader(pool)
    await pool.close()
    results = await asyncio.gather(
        reader.read([PUBLIC]), reader.read(["user:y"]), return_exceptions=True
    )
    assert all(isinstance(result, asyncpg.InterfaceError) for result in results), results


async def test_a_transaction_noting_many_scopes_over_many_statements_bumps_each_once(
    pool: asyncpg.Pool,
) -> None:
    """Noting is per statement into a table (linear), and the one flush at commit bumps all."""
    users = [uuid.uuid4() for _ in range(300)]
    await pool.execute("INSERT INTO users (id) SELECT unnest($1::uuid[])", users)
    async with pool.acquire() as conn, conn.transaction():
        for user in users:  # a statement per user, each noting its scope
            await conn.execute("UPDATE users SET alerts_enabled = false WHERE id = $1", user)
        await conn.execute("UPDATE users SET alerts_enabled = true WHERE id = ANY($1)", users)
    scopes = [user_scope(user) for user in users]
    assert set(await read(pool, scopes)) == {2}  # the insert, then this one transaction
    # The session's note table is empty again; the next transaction notes afresh.
    await pool.execute("UPDATE users SET alerts_enabled = false WHERE id = $1", users[0])
    assert await read(pool, scopes[:2]) == (3, 2)


async def test_settled_versions_refuse_a_bump_still_running_at_the_snapshot(
    pool: asyncpg.Pool,
) -> None:
    user = uuid.uuid4()
    await pool.execute("INSERT INTO users (id) VALUES ($1)", user)
    scope = user_scope(user)
    before = await CoalescingReader(pool).reading([scope])
    assert await settled_versions(pool, [scope, "never:bumped"], before.snapshot) == {scope: 1}
    async with pool.acquire() as conn:
        writing = conn.transaction()
        await writing.start()
        await conn.execute("UPDATE users SET alerts_enabled = false WHERE id = $1", user)
        during = await CoalescingReader(pool).reading([scope])  # the writer is running
        await writing.commit()
    assert await settled_versions(pool, [scope], during.snapshot) is None
    after = await CoalescingReader(pool).reading([scope])
    assert await settled_versions(pool, [scope], after.snapshot) == {scope: 2}
