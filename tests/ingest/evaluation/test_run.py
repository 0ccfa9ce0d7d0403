"""run_evaluation end to end: Parquet in a local store, real Postgres, alerts and NOTIFY."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date
from typing import Protocol

import asyncpg
import pytest

from ingest.evaluation.run import EvaluationSummary, run_evaluation
from services.db import connect
from services.errors import BadUserInput
from services.market.records import Split
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fixtures.evaluation import (
    D0,
    D1,
    D2,
    D3,
    VALUATION,
    add_entity,
    add_user,
    alerts,
    before_split,
    scenario_entity,
    scenario_series,
    watch,
    watched_scenario,
    weekdays,
    write_series,
)


class Evaluate(Protocol):
    async def __call__(self, day: date, tickers: list[str] | None = None) -> EvaluationSummary: ...


@pytest.fixture
def evaluate(database_url: str, eval_store: LocalObjectStore, eval_settings: Settings) -> Evaluate:
    """Evaluate `day` (only `tickers` when given) on this test's database and store."""

    async def run(day: date, tickers: list[str] | None = None) -> EvaluationSummary:
        return await run_evaluation(
            eval_settings, database_url, as_of=day, store=eval_store, tickers=tickers
        )

    return run


async def states(pool: asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record:
    """The user's view of their (one) stock: its newest signal computed since they added it."""
    row = await pool.fetchrow(
        """
        SELECT s.valuation_regime AS last_valuation_regime,
               s.trend_position AS last_trend_position,
               s.fundamental_direction AS last_fundamental_direction,
               s.as_of AS last_evaluated_as_of
        FROM watchlists w
        CROSS JOIN LATERAL (
            SELECT * FROM entity_signals x
            WHERE x.entity_id = w.entity_id AND x.computed_at > w.added_at
            ORDER BY x.as_of DESC LIMIT 1
        ) s
        WHERE w.user_id = $1
        """,
        user_id,
    )
    assert row is not None
    return row


async def seen(pool: asyncpg.Pool, entity_id: uuid.UUID, day: date, **states: str) -> None:
    """A previous signal of the stock on `day` with these states, seen by its watchers."""
    await pool.execute(
        """
        INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime,
                                    fundamental_direction, computed_at)
        VALUES ($1, $2, $3, $4, $5, clock_timestamp())
        """,
        entity_id,
        day,
        states.get("trend_position", "UNKNOWN"),
        states.get("valuation_regime", "UNKNOWN"),
        states.get("fundamental_direction", "UNKNOWN"),
    )


async def test_valuation_cycle_alerts_entering_and_leaving_cheap(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    entity, user = await watched_scenario(pool, eval_store)
    for day in (D0, D1, D2, D3):
        summary = await evaluate(day)
        assert summary.entities == 1 and summary.failures == 0
    rows = await alerts(pool, VALUATION)
    # D0 sets NORMAL silently; D1 enters CHEAP; D2 (25th percentile) stays CHEAP; D3 leaves.
    assert [(r["as_of"], r["previous_state"], r["new_state"]) for r in rows] == [
        (D1, "NORMAL", "CHEAP"),
        (D3, "CHEAP", "NORMAL"),
    ]
    entered, left = rows
    assert entered["headline"] == "ACME entered its historically cheap zone"
    assert left["headline"] == "ACME left its historically cheap zone"
    # D0's month value is 14.6; D1's is 5.0: the text quotes both multiples.
    assert "EV/EBITDA fell from 14.6x" in entered["what_changed"]
    assert "to 5.0x" in entered["what_changed"]
    assert f"on {D0.isoformat()}" in entered["what_changed"]
    assert "percentile" in entered["what_changed"]
    assert entered["data_snapshot"]["valuation_multiple"] == pytest.approx(5.0)
    assert entered["data_snapshot"]["previous"]["valuation_multiple"] == pytest.approx(14.6)
    assert "$20.00" in entered["before_vs_now"] and "$58.40" in entered["before_vs_now"]
    assert "Fundamentals are unchanged" in entered["what_didnt_change"]
    signals = await pool.fetch(
        "SELECT as_of, valuation_regime FROM entity_signals WHERE entity_id = $1 ORDER BY as_of",
        entity,
    )
    assert [(r["as_of"], r["valuation_regime"]) for r in signals] == [
        (D0, "NORMAL"),
        (D1, "CHEAP"),
        (D2, "CHEAP"),
        (D3, "NORMAL"),
    ]
    assert (await states(pool, user))["last_valuation_regime"] == "NORMAL"


async def test_texts_are_plain_and_never_advise(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    await watched_scenario(pool, eval_store)
    for day in (D0, D1, D2, D3):
        await evaluate(day)
    rows = await alerts(pool)
    kinds = {r["alert_type"] for r in rows}
    assert {"valuation_regime_change", "trend_break"} <= kinds
    for row in rows:
        for section in (
            "headline",
            "what_changed",
            "why_it_matters",
            "before_vs_now",
            "what_didnt_change",
        ):
            text = row[section]
            assert text and "None" not in text and "nan" not in text.lower()
            assert not re.search(r"\b(buy|sell|buying|selling|should)\b", text, re.IGNORECASE)
    trend = [r for r in rows if r["alert_type"] == "trend_break"][0]
    assert trend["headline"] == "ACME broke below its 200-day average"
    assert "below its 200-day average" in trend["what_changed"]


async def test_clean_cross_gives_one_trend_break_and_whipsaw_none(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    days = weekdays(date(2023, 1, 2), 320)
    # Clean: 300 closes at 100 (ABOVE from day 199), then 90s: 90 < 0.98 * SMA, so the
    # third close at 90 (index 302) confirms BELOW.
    clean = [100.0] * 300 + [90.0] * 20
    # Whipsaw: same start, then +/-1.5% around 100 every day: never beyond the 2% band.
    whipsaw = [100.0] * 300 + [101.5, 98.5] * 10
    await write_series(eval_store, "CLEAN", days, clean)
    await write_series(eval_store, "WHIP", days, whipsaw)
    user = await add_user(pool)
    for ticker in ("CLEAN", "WHIP"):
        await watch(pool, user, await add_entity(pool, ticker, days[0], days[-1]))
    for day in days[298:]:
        await evaluate(day)
    rows = await alerts(pool, "trend_break")
    assert [(r["as_of"], r["previous_state"], r["new_state"]) for r in rows] == [
        (days[302], "ABOVE_200DMA", "BELOW_200DMA")
    ]
    assert rows[0]["headline"] == "CLEAN broke below its 200-day average"


async def test_split_never_alerts_and_closes_stay_continuous(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    dates, closes, quarters = scenario_series()
    ex_date = date(2024, 6, 10)
    raw, raw_quarters = before_split(dates, closes, quarters, ex_date, 4.0)
    await write_series(eval_store, "SPLT", dates, raw, raw_quarters, [Split(ex_date, 4.0, 1.0)])
    entity = await add_entity(pool, "SPLT", dates[0], dates[-1])
    user = await add_user(pool)
    await watch(pool, user, entity)
    for day in (date(2024, 6, 6), date(2024, 6, 7), ex_date, date(2024, 6, 11)):
        await evaluate(day)
    assert await alerts(pool) == []
    rows = await pool.fetch(
        "SELECT as_of, close, trend_position, valuation_regime, fundamental_direction "
        "FROM entity_signals WHERE entity_id = $1 ORDER BY as_of",
        entity,
    )
    # June's value is 13.35 -> adjusted close 53.40 on and after the ex-date; raw 213.60 before
    # it is on that day's (pre-split) share basis.
    assert [r["close"] for r in rows] == pytest.approx([213.6, 213.6, 53.4, 53.4])
    assert len({(r["trend_position"], r["valuation_regime"]) for r in rows}) == 1


async def test_rerun_same_day_writes_and_notifies_nothing_new(
    pool: asyncpg.Pool, database_url: str, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    await watched_scenario(pool, eval_store)
    await evaluate(D0)
    listener = await connect(database_url)
    received: list[str] = []
    await listener.add_listener("alert_created", lambda *args: received.append(args[3]))
    try:
        first = await evaluate(D1)
        await asyncio.sleep(0.2)
        ids = sorted(str(r["id"]) for r in await alerts(pool))
        assert ids and first.alerts_written == len(ids)
        # One wake-up per alert-writing transaction; its payload is one of that chunk's ids.
        assert len(received) == 1 and received[0] in ids
        second = await evaluate(D1)
        await asyncio.sleep(0.2)
        assert second.alerts_written == 0 and second.entities == 1
        assert sorted(str(r["id"]) for r in await alerts(pool)) == ids
        assert len(received) == 1
    finally:
        await listener.close()


async def test_null_state_is_set_silently(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    _, user = await watched_scenario(pool, eval_store)
    summary = await evaluate(D1)
    assert summary.alerts_written == 0
    row = await states(pool, user)
    assert row["last_valuation_regime"] == "CHEAP"
    assert row["last_trend_position"] == "BELOW_200DMA"
    assert row["last_fundamental_direction"] == "IMPROVING"
    assert row["last_evaluated_as_of"] == D1


async def test_disabled_alerts_still_update_state(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    entity = await scenario_entity(pool, eval_store)
    on = await add_user(pool)
    user_off = await add_user(pool, alerts_enabled=False)
    row_off = await add_user(pool)
    no_valuation = await add_user(pool, alert_types=["trend_break"])
    for user in (on, user_off, no_valuation):
        await watch(pool, user, entity)
    await watch(pool, row_off, entity, alerts_enabled=False)
    await evaluate(D0)
    await evaluate(D1)
    valuation = await alerts(pool, VALUATION)
    assert [r["user_id"] for r in valuation] == [on]
    trend = await alerts(pool, "trend_break")
    assert sorted(r["user_id"] for r in trend) == sorted([on, no_valuation])
    for user in (on, user_off, row_off, no_valuation):
        assert (await states(pool, user))["last_valuation_regime"] == "CHEAP"


async def test_changes_to_or_from_unknown_are_silent(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    entity, user = await watched_scenario(pool, eval_store)
    await seen(pool, entity, D0, fundamental_direction="DETERIORATING")
    await evaluate(D1)
    rows = await alerts(pool)
    # Only the known -> known change (DETERIORATING -> IMPROVING) alerts.
    assert [(r["alert_type"], r["new_state"]) for r in rows] == [
        ("fundamental_inflection", "IMPROVING")
    ]
    assert rows[0]["headline"] == "ACME's earnings turned up"
    # Known -> UNKNOWN: a ticker with 100 days of prices has no trend and no valuation.
    short_days = weekdays(date(2024, 1, 1), 100)
    await write_series(eval_store, "NEWCO", short_days, [10.0] * 100)
    newco = await add_entity(pool, "NEWCO", short_days[0], short_days[-1])
    await watch(pool, user, newco)
    await seen(pool, newco, short_days[-2], valuation_regime="CHEAP", trend_position="ABOVE_200DMA")
    summary = await evaluate(short_days[-1], tickers=["newco"])
    assert summary.alerts_written == 0 and summary.entities == 1
    row = await pool.fetchrow(
        "SELECT * FROM entity_signals WHERE entity_id = $1 AND as_of = $2", newco, short_days[-1]
    )
    assert row is not None
    assert row["valuation_regime"] == "UNKNOWN" and row["trend_position"] == "UNKNOWN"


async def test_readding_a_stock_does_not_realert(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    entity, user = await watched_scenario(pool, eval_store)
    await evaluate(D0)
    await evaluate(D1)
    before = len(await alerts(pool))
    assert before > 0
    await pool.execute("DELETE FROM watchlists WHERE user_id = $1", user)
    await watch(pool, user, entity)
    await evaluate(D2)
    assert len(await alerts(pool)) == before


async def test_changes_while_a_stock_was_off_the_watchlist_are_old_news(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    entity, user = await watched_scenario(pool, eval_store)
    await evaluate(D0)
    assert (await states(pool, user))["last_valuation_regime"] == "NORMAL"
    await pool.execute("DELETE FROM watchlists WHERE user_id = $1", user)
    await watch(pool, user, entity)  # re-added after the stock fell into its cheap zone (D1)
    await evaluate(D1)
    assert await alerts(pool) == []
    assert (await states(pool, user))["last_valuation_regime"] == "CHEAP"
    await evaluate(D2)  # ~25th percentile: still CHEAP
    await evaluate(D3)  # ~35th percentile: leaves CHEAP — news from while it is watched
    valuation = await alerts(pool, "valuation_regime_change")
    assert [(a["previous_state"], a["new_state"], a["as_of"]) for a in valuation] == [
        ("CHEAP", "NORMAL", D3)
    ]


async def test_back_dated_run_does_not_alert_backwards(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    _, user = await watched_scenario(pool, eval_store)
    await evaluate(D1)
    await evaluate(D0)
    assert await alerts(pool) == []
    row = await states(pool, user)
    assert row["last_evaluated_as_of"] == D1 and row["last_valuation_regime"] == "CHEAP"
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 2


async def test_default_as_of_is_the_latest_price_date(
    pool: asyncpg.Pool, database_url: str, eval_store: LocalObjectStore, eval_settings: Settings
) -> None:
    _, user = await watched_scenario(pool, eval_store)
    # A watched ticker whose prices stop earlier is evaluated on its own last day <= D.
    stale_days = weekdays(date(2023, 1, 2), 300)
    await write_series(eval_store, "STALE", stale_days, [5.0] * 300)
    stale = await add_entity(pool, "STALE", stale_days[0], stale_days[-1])
    await watch(pool, user, stale)
    # Nobody watches LONELY: it is not evaluated, and its later date does not move D.
    later = weekdays(date(2024, 7, 1), 250)
    await write_series(eval_store, "LONELY", later, [5.0] * 250)
    await add_entity(pool, "LONELY", later[0], later[-1])
    summary = await run_evaluation(eval_settings, database_url, store=eval_store)
    assert summary.as_of == D3 and summary.entities == 2 and summary.failures == 0
    assert summary.summary_line().startswith(f"evaluate as of {D3.isoformat()}: 2 entities")
    row = await pool.fetchrow(
        "SELECT as_of, close, details FROM entity_signals WHERE entity_id = $1", stale
    )
    assert row is not None
    assert row["as_of"] == D3 and row["close"] == 5.0
    assert row["details"]["price_date"] == stale_days[-1].isoformat()
    # A back-dated run leaves out a watched ticker whose prices start after its date.
    await watch(pool, user, await add_entity(pool, "NEWCO", later[0], later[-1]))
    again = await run_evaluation(eval_settings, database_url, as_of=D2, store=eval_store)
    assert again.entities == 2 and again.failures == 0


async def test_one_bad_ticker_never_stops_the_run(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    good = await scenario_entity(pool, eval_store, "GOOD")
    bad = await scenario_entity(pool, eval_store, "BAD")
    user = await add_user(pool)
    await watch(pool, user, good)
    await watch(pool, user, bad)
    eval_store.path_for("prices/v1/BAD/2024/06/data.parquet").write_bytes(b"not parquet")
    summary = await evaluate(D3)
    assert summary.entities == 1 and summary.failures == 1
    assert summary.failed_tickers == ["BAD"]
    assert "1 failed (BAD)" in summary.summary_line()
    assert await pool.fetchval("SELECT count(*) FROM entity_signals WHERE entity_id = $1", good)
    claim = await pool.fetchrow("SELECT * FROM evaluation_claims WHERE entity_id = $1", bad)
    assert claim is not None
    assert claim["status"] == "failed" and "corrupt object" in claim["error_message"]


async def test_tickers_option_validates_and_skips_unknown(
    pool: asyncpg.Pool, eval_store: LocalObjectStore, evaluate: Evaluate
) -> None:
    await scenario_entity(pool, eval_store)  # nobody watches it: --tickers still evaluates it
    with pytest.raises(BadUserInput):
        await evaluate(D3, tickers=["bad ticker!"])
    summary = await evaluate(D3, tickers=["acme", "NOPE"])
    assert summary.entities == 1
    assert summary.skipped_tickers == ["NOPE"]
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 1
