"""Counter reads for the response cache: concurrent readers share statements, none reads stale."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from services.cache_versions import PUBLIC, CoalescingReader


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
