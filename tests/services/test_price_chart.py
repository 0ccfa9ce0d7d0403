"""Stock.prices' bars from the history object equal those from the month objects, in one GET."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.price_chart import daily_bars
from services.storage.history import build_history, write_history
from services.storage.keys import history_key
from services.storage.local import LocalObjectStore
from tests.fixtures.object_store import CountingStore
from tests.ingest.evaluation.test_loading import random_ticker

WINDOWS = [
    (date(2024, 6, 1), date(2025, 6, 30)),  # the default year
    (date(2018, 7, 1), date(2019, 7, 1)),  # across the 3-for-1 split of 2019-03-04
    (date(2012, 1, 1), date(2012, 12, 31)),  # the SMA lookback reaches the first bar
    (date(2015, 2, 3), date(2015, 2, 3)),  # one day
    (date(2030, 1, 1), date(2030, 12, 31)),  # after the data
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
async def test_history_bars_equal_month_bars_from_one_get(
    tmp_path: Path, start: date, end: date
) -> None:
    local = LocalObjectStore(tmp_path / "objects", fsync=False)
    await random_ticker(local, "RAND", 11)
    expected = await daily_bars(local, "RAND", start, end, use_history=False)
    await write_history(local, await build_history(local, "RAND"))
    store = CountingStore(local)
    assert await daily_bars(store, "RAND", start, end) == expected
    assert store.gets == [history_key("RAND")]
    if start.year < 2030:
        assert expected and expected[0].date >= start and expected[-1].date <= end


async def test_without_a_history_object_the_months_are_read(tmp_path: Path) -> None:
    store = CountingStore(LocalObjectStore(tmp_path / "objects", fsync=False))
    await random_ticker(store, "RAND", 12)
    store.reset()
    bars = await daily_bars(store, "RAND", date(2024, 6, 1), date(2025, 6, 30))
    assert len(bars) > 250
    assert store.gets[0] == history_key("RAND") and len(store.gets) > 12
