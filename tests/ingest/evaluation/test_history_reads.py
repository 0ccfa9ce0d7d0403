"""Evaluation from the history object: same signals as from the partitions, in one GET."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingest.evaluation.loading import DataRange, series_from_history
from ingest.evaluation.parallel import load_and_compute
from ingest.evaluation.run import run_evaluation
from services.market.evaluation import NeedsFullHistory, compute_signal
from services.market.records import PriceBar
from services.market.signals.registry import EvaluationParams
from services.market_data_writes import TickerData, write_objects
from services.settings import Settings
from services.storage.history import build_history, encode_history, write_history
from services.storage.keys import history_key
from services.storage.local import LocalObjectStore
from tests.fixtures.evaluation import (
    D1,
    D3,
    add_entity,
    add_user,
    scenario_series,
    steady_quarters,
    watch,
    weekdays_between,
    write_series,
)
from tests.fixtures.object_store import CountingStore, MakeS3Store
from tests.ingest.evaluation.test_loading import random_ticker

PARAMS = EvaluationParams()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_history_and_partitions_give_identical_signals(tmp_path: Path, seed: int) -> None:
    store = LocalObjectStore(tmp_path / "objects", fsync=False)
    known = await random_ticker(store, "RAND", seed)
    await write_history(store, await build_history(store, "RAND"))
    for day in (date(2016, 5, 17), date(2019, 3, 4), date(2024, 12, 31), date(2025, 6, 30)):
        old = await load_and_compute(store, "RAND", day, PARAMS, known, use_history=False)
        new = await load_and_compute(store, "RAND", day, PARAMS, known)
        assert not new.history_missing and old.signal is not None
        assert new.signal == old.signal  # every number and detail, exactly
        assert new.splits == old.splits


async def test_a_window_too_short_widens_inside_the_history(tmp_path: Path) -> None:
    # Flat EPS and no known first date: the windowed pass cannot fix the EPS direction, so
    # the second pass must take the whole history object, not read the partitions again.
    local = LocalObjectStore(tmp_path / "objects", fsync=False)
    dates, closes, quarters = scenario_series()
    await write_series(local, "ACME", dates, closes, quarters)
    history = await build_history(local, "ACME")
    await write_history(local, history)
    windowed = series_from_history(history, D3, years=PARAMS.history_years)
    with pytest.raises(NeedsFullHistory):
        compute_signal(windowed, D3, PARAMS)
    store = CountingStore(local)
    new = await load_and_compute(store, "ACME", D3, PARAMS, DataRange())
    assert store.gets == [history_key("ACME")]
    old = await load_and_compute(local, "ACME", D3, PARAMS, DataRange(), use_history=False)
    assert new.signal == old.signal and new.signal is not None
    assert new.signal.fundamental_direction == "IMPROVING"


async def signals(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM entity_signals ORDER BY as_of, entity_id")
    return [{k: v for k, v in dict(r).items() if k != "computed_at"} for r in rows]


async def watched(pool: asyncpg.Pool, ticker: str, first: date, last: date) -> None:
    entity = await add_entity(pool, ticker, first, last)
    await watch(pool, await add_user(pool), entity)


@pytest.mark.parametrize("damage", ["missing", "corrupt", "stale"])
async def test_missing_corrupt_or_invalidated_history_falls_back_and_is_rebuilt(
    pool: asyncpg.Pool,
    database_url: str,
    eval_store: LocalObjectStore,
    eval_settings: Settings,
    damage: str,
) -> None:
    dates, closes, quarters = scenario_series()
    cut = dates.index(D1) + 1
    await write_series(eval_store, "ACME", dates[:cut], closes[:cut], quarters)
    await watched(pool, "ACME", dates[0], dates[-1])
    counting = CountingStore(eval_store)
    first = await run_evaluation(eval_settings, database_url, as_of=D1, store=counting)
    assert first.histories_rebuilt == 1  # nothing wrote one: the evaluation did
    key = history_key("ACME")
    if damage == "corrupt":
        await eval_store.put(key, b"not parquet at all")
    elif damage == "missing":
        await eval_store.delete(key)
    # "stale": later bars written straight to the partitions; their writer drops the object.
    await write_series(eval_store, "ACME", dates[cut:], closes[cut:])
    assert damage != "stale" or await eval_store.get(key) is None
    counting.reset()
    second = await run_evaluation(eval_settings, database_url, as_of=D3, store=counting)
    assert second.histories_rebuilt == 1 and second.failures == 0
    assert len(counting.gets) > 100  # the fallback read the month objects
    assert await eval_store.get(key) == encode_history(await build_history(eval_store, "ACME"))
    with_history = await signals(pool)
    # The same two runs from the partitions only give the same rows.
    await pool.execute("DELETE FROM entity_signals")
    await pool.execute("DELETE FROM evaluation_runs")
    off = dataclasses.replace(eval_settings, derived_history=False)
    for day in (D1, D3):
        await run_evaluation(off, database_url, as_of=day, store=eval_store)
    assert await signals(pool) == with_history
    counting.reset()
    third = await run_evaluation(eval_settings, database_url, as_of=D3, store=counting)
    assert third.histories_rebuilt == 0 and counting.gets == [key]


async def test_s3_evaluation_reads_one_object_per_ticker(
    pool: asyncpg.Pool,
    database_url: str,
    eval_settings: Settings,
    make_s3_store: MakeS3Store,
) -> None:
    store = make_s3_store(prefix="env")
    days = weekdays_between(date(2022, 1, 3), date(2024, 6, 28))
    tickers = ["AAA", "BBB", "CCC"]
    for n, ticker in enumerate(tickers):
        bars = [
            PriceBar(d, 10.0 + n + i % 7, 11.0, 9.0, 10 + n + i % 5, 10) for i, d in enumerate(days)
        ]
        quarters = steady_quarters(date(2020, 1, 1), days[-1])
        await write_objects(pool, store, TickerData(ticker, bars=bars, quarters=quarters))
        await watched(pool, ticker, days[0], days[-1])
    requests: list[tuple[str, str]] = []

    def count(request: Any, **_: Any) -> None:
        kind = "LIST" if "list-type=" in request.url else request.method
        requests.append((kind, request.url))

    store.client.meta.events.register("before-send.s3", count)
    summary = await run_evaluation(eval_settings, database_url, as_of=days[-1], store=store)
    assert summary.entities == 3 and summary.histories_rebuilt == 0
    assert sorted(kind for kind, _ in requests) == ["GET"] * len(tickers)
    assert all("/history/v1/" in url for _, url in requests)
    requests.clear()
    await pool.execute("DELETE FROM evaluation_runs")
    off = dataclasses.replace(eval_settings, derived_history=False)
    await run_evaluation(off, database_url, as_of=days[-1], store=store)
    gets = sum(kind == "GET" for kind, _ in requests)
    assert gets >= 30 * len(tickers)  # the partitions: one GET per month and quarter
