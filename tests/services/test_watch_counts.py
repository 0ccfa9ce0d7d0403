"""Maintained watcher counts stay equal to count(*) over watchlists under concurrent writes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services import entities, watchlists


async def counts_match(pool: asyncpg.Pool) -> dict[uuid.UUID, int]:
    maintained = {
        r["entity_id"]: r["watchers"]
        for r in await pool.fetch("SELECT * FROM entity_watch_counts WHERE watchers > 0")
    }
    counted = {
        r["entity_id"]: r["n"]
        for r in await pool.fetch(
            "SELECT entity_id, count(*) AS n FROM watchlists GROUP BY entity_id"
        )
    }
    assert maintained == counted
    return maintained


async def test_watcher_counts_stay_exact_under_concurrent_adds_and_removes(
    pool: asyncpg.Pool,
) -> None:
    insert = "INSERT INTO entities (ticker) VALUES ($1) RETURNING id"
    hot: uuid.UUID = await pool.fetchval(insert, "HOT")
    other: uuid.UUID = await pool.fetchval(insert, "OTHER")
    users = [uuid.uuid4() for _ in range(40)]
    await pool.execute("INSERT INTO users (id) SELECT unnest($1::uuid[])", users)

    async def churn(user: uuid.UUID, i: int) -> None:
        async with pool.acquire() as conn:
            for _ in range(3):
                async with conn.transaction():  # both stocks in one statement, either order
                    await conn.execute(
                        "INSERT INTO watchlists (user_id, entity_id) SELECT $1, unnest($2::uuid[])",
                        user,
                        [hot, other] if i % 2 else [other, hot],
                    )
                await conn.execute(
                    "DELETE FROM watchlists WHERE user_id = $1 AND entity_id = $2", user, hot
                )
                await conn.execute("DELETE FROM watchlists WHERE user_id = $1", user)
            await conn.execute(
                "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", user, hot
            )

    await asyncio.gather(*(churn(user, i) for i, user in enumerate(users)))
    assert await counts_match(pool) == {hot: 40}
    assert await entities.watcher_counts(pool, [hot, other]) == {hot: 40, other: 0}
    popular = await entities.popular(pool, 10)
    assert [(r["ticker"], r["watcher_count"]) for r in popular] == [("HOT", 40)]

    # Deleting users (cascading to their watchlists) and the entity itself keep them exact.
    await pool.execute("DELETE FROM users WHERE id = ANY($1)", users[:10])
    assert await counts_match(pool) == {hot: 30}
    await pool.execute("DELETE FROM entities WHERE id = $1", hot)
    assert await counts_match(pool) == {}
    assert await entities.popular(pool, 10) == []


async def test_watching_an_existing_stock_neither_rewrites_nor_locks_its_entity_row(
    pool: asyncpg.Pool,
) -> None:
    entity = await pool.fetchval(
        "INSERT INTO entities (ticker, has_price_data) VALUES ('HOT', true) RETURNING id"
    )
    user = uuid.uuid4()
    await pool.execute("INSERT INTO users (id) VALUES ($1)", user)
    version = await pool.fetchval("SELECT xmin::text FROM entities WHERE id = $1", entity)
    async with pool.acquire() as conn, conn.transaction():
        await watchlists.add_many(conn, user, ["HOT"], existing_ok=False)
        assert version == await conn.fetchval(
            "SELECT xmin::text FROM entities WHERE id = $1", entity
        )
        # A backfill updating the row meanwhile is not blocked by this open transaction.
        await pool.execute("UPDATE entities SET name = 'Hot Inc' WHERE id = $1", entity, timeout=5)
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 1


async def test_concurrent_get_or_create_of_new_tickers_agree_on_one_row_each(
    pool: asyncpg.Pool,
) -> None:
    async def create() -> dict[str, uuid.UUID]:
        async with pool.acquire() as conn, conn.transaction():
            rows = await entities.get_or_create(conn, ["NEWA", "NEWB", "NEWC"])
            return {ticker: row["entity_id"] for ticker, row in rows.items()}

    results = await asyncio.gather(*(create() for _ in range(8)))
    assert len({tuple(sorted(r.items())) for r in results}) == 1
    assert await pool.fetchval("SELECT count(*) FROM entities") == 3
