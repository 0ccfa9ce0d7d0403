"""`make run` loads the demo once, and resumes a demo load that stopped part-way."""

from __future__ import annotations

from datetime import date

import asyncpg

from ingest.demo.load import demo_loaded
from services.auth.tokens import DEMO_USER_ID


async def test_demo_counts_as_loaded_only_once_evaluated_to_the_newest_prices(
    pool: asyncpg.Pool, database_url: str
) -> None:
    assert not await demo_loaded(pool)
    await pool.execute(
        "INSERT INTO users (id, email) VALUES ($1, 'demo@example.com')", DEMO_USER_ID
    )
    entity_id = await pool.fetchval(
        "INSERT INTO entities (ticker, has_price_data, price_data_max_date, data_status)"
        " VALUES ('ORBT.DEMO', true, $1, 'ready') RETURNING id",
        date(2025, 6, 30),
    )
    await pool.execute(
        "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", DEMO_USER_ID, entity_id
    )
    signal = (
        "INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime,"
        " fundamental_direction, computed_at)"
        " VALUES ($1, $2, 'UNKNOWN', 'UNKNOWN', 'UNKNOWN', clock_timestamp())"
    )
    await pool.execute(signal, entity_id, date(2025, 3, 31))
    assert not await demo_loaded(pool)  # stopped after the baseline evaluation

    await pool.execute(signal, entity_id, date(2025, 6, 30))
    assert await demo_loaded(pool)
