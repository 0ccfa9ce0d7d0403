"""An entity's commit writes claim, signal and its watchers' alerts together, or nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from services import signal_store as db
from services.delivery.registry import DeliveryChannel
from services.market.transitions import Transition
from tests.fixtures.evaluation import add_entity, add_user, watch

DAY = date(2024, 6, 28)
TREND_BREAK = Transition(
    "trend_break", "BELOW_200DMA", "ABOVE_200DMA", "h", "w", "y", "b", "d", {"n": 1}
)
REGIME_CHANGE = Transition(
    "valuation_regime_change", "NORMAL", "CHEAP", "h2", "w2", "y2", "b2", "d2", {}
)


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


def later() -> datetime:
    """A 'previous signal computed at' after every watchlist row of the test."""
    return datetime.now(UTC) + timedelta(hours=1)


async def claimed(pool: asyncpg.Pool) -> tuple[db.EvaluationRun, uuid.UUID, uuid.UUID]:
    entity = await add_entity(pool, "ACME", date(2020, 1, 2), DAY)
    user = await add_user(pool)
    await watch(pool, user, entity)
    run = await db.join_or_create_run(pool, DAY, None)
    assert [e.id for e in await db.claim_batch(pool, run.id, "me", 10, 600)] == [entity]
    return run, entity, user


@pytest.mark.parametrize("with_alert", [False, True])
async def test_commit_writes_signal_and_alerts_with_the_claim(
    pool: asyncpg.Pool, with_alert: bool
) -> None:
    run, entity, user = await claimed(pool)
    fan_out = db.FanOut([TREND_BREAK], later(), 100) if with_alert else None
    written = await db.commit_entity(
        pool, run_id=run.id, worker="me", signal=signal_row(entity), fan_out=fan_out
    )
    assert written == (1 if with_alert else 0)
    stored = await pool.fetchrow("SELECT * FROM entity_signals WHERE entity_id = $1", entity)
    assert stored is not None and stored["valuation_multiple"] == 12.5
    assert stored["details"] == {"price_date": DAY.isoformat()}
    assert await pool.fetchval("SELECT status FROM evaluation_claims") == "done"
    rows = await pool.fetch("SELECT * FROM alert_history")
    assert len(rows) == written
    if with_alert:
        assert rows[0]["user_id"] == user and rows[0]["new_state"] == "ABOVE_200DMA"
        assert rows[0]["data_snapshot"] == {"n": 1}


@pytest.mark.parametrize("with_alert", [False, True])
async def test_a_lost_claim_writes_nothing(pool: asyncpg.Pool, with_alert: bool) -> None:
    run, entity, _ = await claimed(pool)
    await pool.execute("UPDATE evaluation_claims SET claimed_by = 'someone else'")
    fan_out = db.FanOut([TREND_BREAK], later(), 100) if with_alert else None
    written = await db.commit_entity(
        pool, run_id=run.id, worker="me", signal=signal_row(entity), fan_out=fan_out
    )
    assert written is None
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 0
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0
    assert await pool.fetchval("SELECT status FROM evaluation_claims") == "processing"


async def test_a_burst_in_chunks_reaches_every_eligible_watcher_once_in_user_order(
    pool: asyncpg.Pool, database_url: str
) -> None:
    run, entity, first = await claimed(pool)
    users = [first] + [await add_user(pool) for _ in range(6)]
    for user in users[1:]:
        await watch(pool, user, entity)
    signals: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("alert_created", lambda *args: signals.append(args[3]))
        written = await db.commit_entity(
            pool,
            run_id=run.id,
            worker="me",
            signal=signal_row(entity),
            fan_out=db.FanOut([TREND_BREAK, REGIME_CHANGE], later(), 3),
        )
        await asyncio.sleep(0.2)
    finally:
        await listener.close()
    assert written == 14
    rows = await pool.fetch("SELECT user_id, alert_type FROM alert_history ORDER BY commit_seq")
    expected = [
        (user, kind)
        for user in sorted(users)
        for kind in ("trend_break", "valuation_regime_change")
    ]
    assert [(r["user_id"], r["alert_type"]) for r in rows] == expected
    # One wake-up per chunk of three watchers (3 + 3 + 1), not one per alert.
    assert len(signals) == 3
    assert await pool.fetchval("SELECT status FROM evaluation_claims") == "done"
    # Re-running the date writes nothing new and queues nothing twice.
    await pool.execute("UPDATE evaluation_claims SET status = 'processing'")
    deliveries = await pool.fetchval("SELECT count(*) FROM deliveries")
    again = await db.commit_entity(
        pool,
        run_id=run.id,
        worker="me",
        signal=signal_row(entity),
        fan_out=db.FanOut([TREND_BREAK, REGIME_CHANGE], later(), 3),
    )
    assert again == 0
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 14
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == deliveries


async def test_only_watchers_with_alerts_on_for_the_type_who_saw_the_previous_state_hear(
    pool: asyncpg.Pool,
) -> None:
    run, entity, regular = await claimed(pool)
    item_off, user_off, type_off, newcomer = [await add_user(pool) for _ in range(4)]
    await watch(pool, item_off, entity, alerts_enabled=False)
    await watch(pool, user_off, entity)
    await pool.execute("UPDATE users SET alerts_enabled = false WHERE id = $1", user_off)
    await watch(pool, type_off, entity)
    await pool.execute(
        "UPDATE users SET alert_types = ARRAY['valuation_regime_change'] WHERE id = $1", type_off
    )
    seen_since = await pool.fetchval("SELECT clock_timestamp()")
    await watch(pool, newcomer, entity)  # added after the previous signal: silent first time
    written = await db.commit_entity(
        pool,
        run_id=run.id,
        worker="me",
        signal=signal_row(entity),
        fan_out=db.FanOut([TREND_BREAK], seen_since, 100),
    )
    assert written == 1
    assert await pool.fetchval("SELECT user_id FROM alert_history") == regular


async def test_a_claim_lost_between_chunks_stops_the_burst_and_keeps_the_signal_unwritten(
    pool: asyncpg.Pool,
) -> None:
    run, entity, _ = await claimed(pool)
    for _ in range(4):
        await watch(pool, await add_user(pool), entity)
    # Another evaluator takes the claim over once the first chunk is in.
    await pool.execute(
        """
        CREATE FUNCTION steal_claim() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE evaluation_claims SET claimed_by = 'other';
            RETURN NULL;
        END $$;
        CREATE TRIGGER steal AFTER INSERT ON alert_history
            FOR EACH STATEMENT EXECUTE FUNCTION steal_claim();
        """
    )
    written = await db.commit_entity(
        pool,
        run_id=run.id,
        worker="me",
        signal=signal_row(entity),
        fan_out=db.FanOut([TREND_BREAK], later(), 2),
    )
    assert written is None
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 2
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 0


async def test_a_channel_without_a_sender_gets_no_outbox_rows(pool: asyncpg.Pool) -> None:
    run, entity, user = await claimed(pool)
    await pool.execute("UPDATE users SET email = 'a@example.com' WHERE id = $1", user)
    await pool.execute(
        "INSERT INTO webhook_endpoints (user_id, url, secret) VALUES ($1, 'https://h.test/', 's')",
        user,
    )
    written = await db.commit_entity(
        pool,
        run_id=run.id,
        worker="me",
        signal=signal_row(entity),
        fan_out=db.FanOut([TREND_BREAK], later(), 100, frozenset({DeliveryChannel.WEBHOOK})),
    )
    assert written == 1
    assert [r["channel"] for r in await pool.fetch("SELECT channel FROM deliveries")] == ["webhook"]


async def test_renewing_extends_only_this_workers_processing_claims(pool: asyncpg.Pool) -> None:
    run, entity, _ = await claimed(pool)
    other = await add_entity(pool, "OTHER", date(2020, 1, 2), DAY)
    await pool.execute(
        "INSERT INTO evaluation_claims (run_id, entity_id, status, claimed_by, claimed_at) "
        "VALUES ($1, $2, 'processing', 'someone else', now() - interval '1 hour')",
        run.id,
        other,
    )
    await pool.execute("UPDATE evaluation_claims SET claimed_at = now() - interval '1 hour'")
    assert await db.renew_claims(pool, run.id, "me") == 1
    ages = {
        r["entity_id"]: r["fresh"]
        for r in await pool.fetch(
            "SELECT entity_id, claimed_at > now() - interval '1 minute' AS fresh "
            "FROM evaluation_claims"
        )
    }
    assert ages == {entity: True, other: False}
    # Another evaluator may take over the expired claim, not the renewed one.
    taken = await db.claim_batch(pool, run.id, "thief", 10, 60)
    assert [e.id for e in taken] == [other]
