"""The windowed Parquet read gives exactly the signal of a full-history read, from fewer objects."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest

from ingest.evaluation.loading import DataRange, load_series
from services.market.evaluation import NeedsFullHistory, compute_signal
from services.market.records import QuarterFundamentals, Split
from services.market.signals.kind import Evaluation as Signal
from services.market.signals.registry import EvaluationParams
from services.storage.local import LocalObjectStore
from services.storage.object_store import ObjectStore
from tests.fixtures.evaluation import quarter_ends, weekdays_between, write_series

AS_OF = date(2025, 6, 30)
FIRST = date(2012, 1, 3)
PARAMS = EvaluationParams()
SPLIT_DAY = date(2019, 3, 4)


class CountingStore(LocalObjectStore):
    """A local store that remembers which keys were fetched."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.fetched: list[str] = []

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        self.fetched.extend(keys)
        return await super().get_many(keys)


async def random_ticker(store: ObjectStore, ticker: str, seed: int) -> DataRange:
    rng = random.Random(seed)
    days = weekdays_between(FIRST, AS_OF)
    price, closes = 50.0, []
    for _ in days:
        price *= math.exp(rng.gauss(0.0002, 0.02))
        closes.append(price)
    ends = quarter_ends(date(2011, 1, 1), AS_OF)
    quarters, eps = [], 1.0
    for end in ends:
        eps *= math.exp(rng.gauss(0.01, 0.08))
        quarters.append(
            QuarterFundamentals(
                end,
                sales=4e9 * eps,
                ebitda=1e9 * eps,
                diluted_eps=eps,
                shares_outstanding=1e9,
                cash=1e8,
                total_debt=3e8,
            )
        )
    split = Split(SPLIT_DAY, 3.0, 1.0)
    raw = [c * 3 if d < split.ex_date else c for d, c in zip(days, closes, strict=True)]
    raw_quarters = [
        dataclasses.replace(q, diluted_eps=(q.diluted_eps or 0) * 3, shares_outstanding=1e9 / 3)
        if q.period_end_date < split.ex_date
        else q
        for q in quarters
    ]
    await write_series(store, ticker, days, raw, raw_quarters, [split])
    return DataRange(days[0], ends[0])


def same_signal(a: Signal, b: Signal) -> None:
    assert (a.trend_position, a.valuation_regime, a.fundamental_direction) == (
        b.trend_position,
        b.valuation_regime,
        b.fundamental_direction,
    )
    assert a.valuation_metric == b.valuation_metric
    for name in ("close", "sma200", "valuation_multiple", "valuation_percentile", "eps_ttm"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), name


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_windowed_read_equals_full_history(tmp_path: Path, seed: int) -> None:
    store = CountingStore(tmp_path / "objects")
    known = await random_ticker(store, "RAND", seed)
    for day in (date(2024, 12, 31), AS_OF):
        store.fetched.clear()
        windowed = await load_series(store, "RAND", day, years=10, known=known)
        window_keys = list(store.fetched)
        full = await load_series(store, "RAND", day, years=10, full_history=True)
        assert len(window_keys) < len(store.fetched) - len(window_keys)
        expected = compute_signal(full, day, PARAMS)
        try:
            got = compute_signal(windowed, day, PARAMS)
        except NeedsFullHistory:
            pytest.fail("a random walk always meets a confirming streak inside 10 years")
        same_signal(got, expected)
        price_keys = sorted(k for k in window_keys if k.startswith("prices/"))
        # Only the months with days in (day - 10 years, day]: both days are month ends, so
        # the window starts on the 1st of the next month: exactly 120 month partitions.
        assert len(price_keys) == 120
        first_month = 1 if day.month == 12 else day.month + 1
        first_year = day.year - 10 + (1 if day.month == 12 else 0)
        assert price_keys[0] == f"prices/v1/RAND/{first_year}/{first_month:02d}/data.parquet"


async def test_undetermined_window_falls_back_to_full_history(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "objects")
    known = await random_ticker(store, "RAND", 7)
    windowed = await load_series(store, "RAND", AS_OF, years=10, known=known)
    # Flat split-adjusted EPS inside the window (raw 3.0 before the 3-for-1 split, 1.0 after):
    # no comparison leaves the band, so the start state stays unknown.
    flat = [
        dataclasses.replace(q, diluted_eps=3.0 if q.period_end_date < SPLIT_DAY else 1.0)
        for q in windowed.quarters
    ]
    with pytest.raises(NeedsFullHistory):
        compute_signal(dataclasses.replace(windowed, quarters=flat), AS_OF, PARAMS)
    complete = dataclasses.replace(windowed, quarters=flat, quarters_complete=True)
    assert compute_signal(complete, AS_OF, PARAMS).fundamental_direction == "IMPROVING"
