"""`alertCreated(after:)` replay against a real PostgreSQL: commit order, pages, positions."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg
import pytest

from services.errors import BadUserInput, NotFound
from services.live import replay as alert_replay
from tests.fixtures.ws import insert_alert_in, insert_alerts, make_entity, make_user


async def replayed_ids(pool: asyncpg.Pool, user: UUID, after_id: UUID, page: int) -> list[UUID]:
    position = await alert_replay.position_of(pool, user, after_id)
    return [r["id"] async for r in alert_replay.replay(pool, user, position, page)]


@pytest.mark.parametrize("page_size", [1, 2, 100])
async def test_replay_returns_exactly_what_committed_after_the_position_in_commit_order(
    pool: asyncpg.Pool, page_size: int
) -> None:
    user, other = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    first = await insert_alerts(pool, [(user, entity)] * 2)
    await insert_alerts(pool, [(other, entity)])
    rest = await insert_alerts(pool, [(user, entity)] * 3)
    assert await replayed_ids(pool, user, first[0], page_size) == [first[1], *rest]
    assert await replayed_ids(pool, user, rest[-1], page_size) == []


async def test_an_alert_committed_after_the_position_is_replayed_even_if_written_before_it(
    pool: asyncpg.Pool,
) -> None:
    """A long transaction's alert has an older sent_at than `after` but committed later."""
    user = await make_user(pool)
    entity = await make_entity(pool)
    async with pool.acquire() as slow_conn:
        async with slow_conn.transaction():
            await slow_conn.execute("SELECT now()")  # it began here
            (seen,) = await insert_alerts(pool, [(user, entity)])  # the client got this one
            slow = await insert_alert_in(slow_conn, user, entity, date(1996, 1, 1))
    later = await insert_alerts(pool, [(user, entity)])
    sent_at = await pool.fetchval("SELECT sent_at FROM alert_history WHERE id = $1", seen)
    assert slow["sent_at"] < sent_at
    assert await replayed_ids(pool, user, seen, 100) == [slow["id"], *later]


async def test_position_of_refuses_other_users_and_unknown_ids(pool: asyncpg.Pool) -> None:
    user, other = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    (others,) = await insert_alerts(pool, [(other, entity)])
    with pytest.raises(NotFound):
        await alert_replay.position_of(pool, user, others)
    with pytest.raises(BadUserInput):
        alert_replay.parse_after("not-an-id")
