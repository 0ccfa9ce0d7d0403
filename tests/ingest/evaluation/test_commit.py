"""An entity's commit writes claim, signal, states (and alerts) together, or nothing at all."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from services import signal_store as db
from services.market.transitions import AlertRow, StateRow
from tests.fixtures.evaluation import add_entity, add_user, watch

DAY = date(2024, 6, 28)


def signal_row(entity_id: uuid.UUID) -> db.SignalRow:
    return db.SignalRow(
        entity_id=entity_id,
        as_of=DAY,
        close=10.0,
        sma200=9.0,
        trend_position="ABOVE_200DMA",
        valuation_metric="EV/EBITDA",
        valuation_multiple=12.5,
        valuation_percentile=40.0,
        valuation_regime="NORMAL",
        eps_ttm=1.5,
        fundamental_direction="IMPROVING",
        details={"price_date": DAY.isoformat()},
    )


def alert_row(user_id: uuid.UUID) -> AlertRow:
    return AlertRow(
        user_id, "trend_break", "BELOW_200DMA", "ABOVE_200DMA", "h", "w", "y", "b", "d", {}
    )


async def claimed(pool: asyncpg.Pool) -> tuple[db.EvaluationRun, uuid.UUID, uuid.UUID]:
    entity = await add_entity(pool, "ACME", date(2020, 1, 2), DAY)
    user = await add_user(pool)
    await watch(pool, user, entity)
    run = await db.join_or_create_run(pool, DAY, None)
    assert [e.id for e in await db.claim_batch(pool, run.id, "me", 10, 600)] == [entity]
    return run, entity, user


@pytest.mark.parametrize("with_alert", [False, True])
async def test_commit_writes_signal_states_and_alerts_with_the_claim(
    pool: asyncpg.Pool, with_alert: bool
) -> None:
    run, entity, user = await claimed(pool)
    state = StateRow(user, "NORMAL", "ABOVE_200DMA", "IMPROVING")
    alerts = [alert_row(user)] if with_alert else []
    inserted = await db.commit_entity(
        pool, run_id=run.id, worker="me", signal=signal_row(entity), alerts=alerts, states=[state]
    )
    assert inserted is not None and len(inserted) == len(alerts)
    stored = await pool.fetchrow("SELECT * FROM entity_signals WHERE entity_id = $1", entity)
    assert stored is not None and stored["valuation_multiple"] == 12.5
    assert stored["details"] == {"price_date": DAY.isoformat()}
    states = await pool.fetchrow("SELECT * FROM user_entity_settings WHERE user_id = $1", user)
    assert states is not None and states["last_trend_position"] == "ABOVE_200DMA"
    assert states["last_evaluated_as_of"] == DAY
    assert await pool.fetchval("SELECT status FROM evaluation_claims") == "done"
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == len(alerts)


@pytest.mark.parametrize("with_alert", [False, True])
async def test_a_lost_claim_writes_nothing(pool: asyncpg.Pool, with_alert: bool) -> None:
    run, entity, user = await claimed(pool)
    await pool.execute("UPDATE evaluation_claims SET claimed_by = 'someone else'")
    state = StateRow(user, "NORMAL", "ABOVE_200DMA", "IMPROVING")
    alerts = [alert_row(user)] if with_alert else []
    inserted = await db.commit_entity(
        pool, run_id=run.id, worker="me", signal=signal_row(entity), alerts=alerts, states=[state]
    )
    assert inserted is None
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 0
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0
    row = await pool.fetchrow("SELECT * FROM user_entity_settings WHERE user_id = $1", user)
    assert row is not None and row["last_trend_position"] is None
    assert row["last_evaluated_as_of"] is None
    assert await pool.fetchval("SELECT status FROM evaluation_claims") == "processing"
