"""Stock.prices over real HTTP returns what the backfill worker wrote, with the 200-day SMA."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from ingest.dolthub.client import DoltHubClient
from ingest.jobs.backfill import run_backfill
from ingest.progress import Progress
from services.settings import Settings
from services.storage.local import LocalObjectStore
from services.storage.market_files import read_prices
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.app import GraphQLClient
from tests.fixtures.ingest import queue_tickers

TODAY = date(2026, 11, 28)
QUERY = """query($t: String!, $from: Date, $to: Date) {
  stock(ticker: $t) {
    priceDataMinDate priceDataMaxDate
    prices(from: $from, to: $to) { date open high low close volume sma200 }
  }
}"""


def tickers_by_splits(fake: FakeDoltHub) -> tuple[str, str]:
    """A synthetic ticker without splits and one with a split in 2024 (inside the window)."""
    plain = next(t for t in (f"S{i:04d}" for i in range(200)) if not fake.data.splits(t))
    split = next(
        t
        for t in (f"S{i:04d}" for i in range(400))
        if [s.ex_date.year for s in fake.data.splits(t)] == [2024]
    )
    return plain, split


@pytest.fixture
async def backfilled(
    settings: Settings,
    ingest_settings: Settings,
    pool: asyncpg.Pool,
    dolthub_client_factory: Callable[..., DoltHubClient],
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
) -> tuple[LocalObjectStore, str, str]:
    """Two tickers backfilled by the worker into the app's object store."""
    assert settings.object_store_url == f"file://{tmp_path / 'objects'}"
    store = LocalObjectStore(tmp_path / "objects", fsync=False)
    plain, split = tickers_by_splits(fake_dolthub)
    await queue_tickers(pool, [plain, split])
    progress = Progress("backfill", interactive=False)
    await run_backfill(
        ingest_settings, pool, dolthub_client_factory(), store, progress, workers=2, today=TODAY
    )
    assert progress.outcomes == {"completed": 2}
    return store, plain, split


def expected_sma(closes: list[float], index: int) -> float | None:
    if index < 199:
        return None
    return math.fsum(closes[index - 199 : index + 1]) / 200


async def test_prices_are_the_stored_bars_with_sma200(
    gql: GraphQLClient, backfilled: tuple[LocalObjectStore, str, str]
) -> None:
    store, plain, _ = backfilled
    stored = await read_prices(store, plain)
    body = await gql(QUERY, {"t": plain, "from": "2025-01-01", "to": "2025-06-30"})
    assert "errors" not in body, body
    points = body["data"]["stock"]["prices"]
    start = stored.dates.index(date(2025, 1, 2))
    end = stored.dates.index(date(2025, 6, 30))
    assert [p["date"] for p in points] == [d.isoformat() for d in stored.dates[start : end + 1]]
    for offset, point in enumerate(points):
        i = start + offset
        assert (point["open"], point["high"], point["low"], point["close"]) == (
            stored.opens[i],
            stored.highs[i],
            stored.lows[i],
            stored.closes[i],
        )
        assert point["volume"] == stored.volumes[i]
        sma = expected_sma(stored.closes, i)
        assert sma is not None and point["sma200"] == pytest.approx(sma, rel=1e-12)


async def test_sma200_is_null_until_200_days_exist(
    gql: GraphQLClient, backfilled: tuple[LocalObjectStore, str, str]
) -> None:
    store, plain, _ = backfilled
    stored = await read_prices(store, plain)
    body = await gql(QUERY, {"t": plain, "from": "2016-01-01", "to": "2016-12-31"})
    points = body["data"]["stock"]["prices"]
    assert points[0]["date"] == stored.dates[0].isoformat()
    smas = [p["sma200"] for p in points]
    assert smas[:199] == [None] * 199
    assert smas[199] == pytest.approx(expected_sma(stored.closes, 199), rel=1e-12)
    assert all(s is not None for s in smas[199:])


async def test_prices_are_split_adjusted_to_the_window_end(
    gql: GraphQLClient, backfilled: tuple[LocalObjectStore, str, str], fake_dolthub: FakeDoltHub
) -> None:
    store, _, split_ticker = backfilled
    (split,) = fake_dolthub.data.splits(split_ticker)
    ratio = split.to_factor / split.for_factor
    stored = await read_prices(store, split_ticker)
    after = await gql(QUERY, {"t": split_ticker, "from": "2024-01-01", "to": "2024-12-31"})
    points = {p["date"]: p for p in after["data"]["stock"]["prices"]}
    before_day = max(d for d in stored.dates if d < split.ex_date)
    i = stored.dates.index(before_day)
    raw = points[before_day.isoformat()]
    assert raw["close"] == pytest.approx(stored.closes[i] / ratio, rel=1e-12)
    assert raw["volume"] == pytest.approx(stored.volumes[i] * ratio, rel=1e-12)
    ex = points[split.ex_date.isoformat()]
    assert ex["close"] == stored.closes[stored.dates.index(split.ex_date)]  # on/after: raw
    # The window ending before the split shows the raw, unadjusted bars.
    early = await gql(
        QUERY, {"t": split_ticker, "from": "2023-06-01", "to": before_day.isoformat()}
    )
    assert early["data"]["stock"]["prices"][-1]["close"] == stored.closes[i]


async def test_prices_without_objects_are_empty(gql: GraphQLClient, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO entities (ticker, has_price_data, data_status) VALUES ('LOST', true, 'ready')"
    )
    body = await gql(QUERY, {"t": "LOST"})
    assert body["data"] == {
        "stock": {"priceDataMinDate": None, "priceDataMaxDate": None, "prices": []}
    }
    assert "errors" not in body
