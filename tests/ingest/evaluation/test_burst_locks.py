"""A popular stock's alert burst never holds a lock that unrelated writers need for long."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg

from services import signal_store as db
from services.market.transitions import Transition
from tests.fixtures.evaluation import add_entity, add_user, watch

DAY = date(2024, 6, 28)
WATCHERS = 8_000
CHUNK = 400
TREND_BREAK = Transition("trend_break", "BELOW_200DMA", "ABOVE_200DMA", "h", "w", "y", "b", "d", {})
# Every unrelated write below must get its locks within this, or fail (lock_timeout).
LOCK_BOUND = "200ms"


def signal_row(entity_id: uuid.UUID) -> db.SignalRow:
    return db.SignalRow(
        entity_id, DAY, 10.0, 9.0, "ABOVE_200DMA", None, None, None, "UNKNOWN", None, "UNKNOWN", {}
    )


async def test_unrelated_writers_get_their_locks_while_a_burst_is_written(
    pool: asyncpg.Pool, database_url: str
) -> None:
    popular = await add_entity(pool, "POPULAR", date(2020, 1, 2), DAY)
    other = await add_entity(pool, "OTHER", date(2020, 1, 2), DAY)
    await pool.execute(
        """
        WITH u AS (INSERT INTO users (id) SELECT gen_random_uuid()
                   FROM generate_series(1, $2) RETURNING id)
        INSERT INTO watchlists (user_id, entity_id) SELECT id, $1 FROM u
        """,
        popular,
        WATCHERS,
    )
    bystander = await add_user(pool)
    await watch(pool, bystander, other)
    run = await db.join_or_create_run(pool, DAY, ["POPULAR"])
    assert len(await db.claim_batch(pool, run.id, "me", 10, 600)) == 1
    # Each chunk's statement takes a little while, as a large one would on a busy server.
    await pool.execute(
        """
        CREATE FUNCTION slow_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
        CREATE TRIGGER slow_chunk AFTER INSERT ON alert_history
            FOR EACH STATEMENT EXECUTE FUNCTION slow_chunk();
        """
    )
    first_chunk = asyncio.Event()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener("alert_created", lambda *_: first_chunk.set())
    burst = asyncio.create_task(
        db.commit_entity(
            pool,
            run_id=run.id,
            worker="me",
            signal=signal_row(popular),
            fan_out=db.FanOut([TREND_BREAK], datetime.now(UTC) + timedelta(hours=1), CHUNK),
        )
    )
    await asyncio.wait_for(first_chunk.wait(), timeout=30)
    await listener.close()

    writer = await asyncpg.connect(database_url)
    try:
        await writer.execute(f"SET lock_timeout = '{LOCK_BOUND}'")
        for n in range(3):
            # Another stock's alert (the commit-order lock), another user's watchlist and
            # settings, another stock's row: none waits past the bound.
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, "
                    "new_state, headline, what_changed, why_it_matters, before_vs_now, "
                    "what_didnt_change) VALUES ($1, $2, 'trend_break', $3, 'ABOVE_200DMA', "
                    "'h', 'w', 'y', 'b', 'd')",
                    bystander,
                    other,
                    DAY - timedelta(days=n + 1),
                )
            newcomer = await add_user(pool)
            await writer.execute(
                "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", newcomer, other
            )
            await writer.execute("UPDATE users SET alerts_enabled = true WHERE id = $1", bystander)
            await writer.execute("UPDATE entities SET name = name WHERE id = $1", other)
        # The burst was still being written while all of that got through.
        assert not burst.done()
        assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 0
    finally:
        await writer.close()
    assert await burst == WATCHERS
    assert (
        await pool.fetchval("SELECT count(*) FROM alert_history WHERE entity_id = $1", popular)
        == WATCHERS
    )
