"""The derived history object: equal to its partitions, invalidated by every partition write."""

from __future__ import annotations

import io
import logging
from datetime import date

import pyarrow.parquet as pq
import pytest

from services.market.records import Dividend, PriceBar, QuarterFundamentals, Split
from services.storage.history import (
    build_history,
    decode_history,
    encode_history,
    read_history,
    refreshed,
    write_history,
)
from services.storage.keys import history_key
from services.storage.market_files import (
    Written,
    read_dividends,
    read_fundamentals,
    read_prices,
    read_splits,
    write_dividends,
    write_fundamentals,
    write_prices,
    write_splits,
)
from services.storage.object_store import ObjectStore
from services.storage.parquet import PRICE_SCHEMA, CorruptObjectError, encode_rows, encode_table
from tests.fixtures.evaluation import quarter_ends, weekdays_between


def bars(start: date, end: date, base: float) -> list[PriceBar]:
    days = weekdays_between(start, end)
    return [
        PriceBar(d, base + i, base + i + 1, base + i - 1, base + i + 0.5, 100 + i)
        for i, d in enumerate(days)
    ]


def quarters(start: date, end: date, eps: float) -> list[QuarterFundamentals]:
    return [
        QuarterFundamentals(
            q, sales=4e9, ebitda=1e9, diluted_eps=eps + i, shares_outstanding=1e9, cash=None
        )
        for i, q in enumerate(quarter_ends(start, end))
    ]


async def seed(store: ObjectStore) -> None:
    await write_prices(store, "ACME", bars(date(2019, 1, 1), date(2020, 6, 30), 10.0))
    await write_fundamentals(store, "ACME", quarters(date(2018, 1, 1), date(2020, 6, 30), 1.0))
    await write_splits(store, "ACME", [Split(date(2019, 6, 3), 2.0, 1.0)])


async def current_bytes(store: ObjectStore, ticker: str) -> bytes:
    """What the history object must hold: a fresh build from the partitions."""
    return encode_history(await build_history(store, ticker))


async def test_history_holds_exactly_what_the_partitions_hold(object_store: ObjectStore) -> None:
    await seed(object_store)
    await write_history(object_store, await build_history(object_store, "ACME"))
    history = await read_history(object_store, "acme")
    assert history is not None
    series = await read_prices(object_store, "ACME")
    assert history.price_series().table.equals(series.table)
    assert history.quarter_records(None, None) == await read_fundamentals(object_store, "ACME")
    assert history.split_records() == await read_splits(object_store, "ACME")
    window = history.price_series(date(2019, 12, 1), date(2020, 1, 31))
    expected = await read_prices(object_store, "ACME", date(2019, 12, 1), date(2020, 1, 31))
    assert window.dates == expected.dates and window.closes == expected.closes
    narrow = await read_history(object_store, "ACME", price_columns=("close",), quarter_columns=())
    assert narrow is not None
    assert narrow.prices.column_names == ["date", "close"]
    assert narrow.quarters.num_rows == 0 and narrow.split_records() == history.split_records()


@pytest.mark.parametrize("writer", ["prices", "fundamentals", "splits", "dividends"])
async def test_every_partition_writer_deletes_the_history_first(
    object_store: ObjectStore, writer: str
) -> None:
    await seed(object_store)
    await write_history(object_store, await build_history(object_store, "ACME"))
    if writer == "prices":
        await write_prices(object_store, "ACME", bars(date(2020, 7, 1), date(2020, 7, 3), 50.0))
    elif writer == "fundamentals":
        await write_fundamentals(
            object_store, "ACME", quarters(date(2020, 7, 1), date(2020, 9, 30), 9.0)
        )
    elif writer == "splits":
        await write_splits(object_store, "ACME", [Split(date(2020, 7, 1), 3.0, 1.0)])
    else:
        await write_dividends(object_store, "ACME", [])
    assert await object_store.get(history_key("ACME")) is None
    assert await read_history(object_store, "ACME") is None


async def test_writing_nothing_keeps_the_history(object_store: ObjectStore) -> None:
    await seed(object_store)
    await write_history(object_store, await build_history(object_store, "ACME"))
    await write_prices(object_store, "ACME", [])
    await write_splits(object_store, "ACME", [])
    assert await object_store.get(history_key("ACME")) == await current_bytes(object_store, "ACME")


async def test_refreshed_history_equals_a_rebuild_byte_for_byte(object_store: ObjectStore) -> None:
    await seed(object_store)
    old = await build_history(object_store, "ACME")
    written: Written = {}
    # New days inside an existing month (overwriting one), a new month, a replaced quarter,
    # a new quarter and a second split.
    changed = bars(date(2020, 6, 29), date(2020, 7, 2), 70.0)
    await write_prices(object_store, "ACME", changed, written=written)
    await write_fundamentals(
        object_store, "ACME", quarters(date(2020, 4, 1), date(2020, 9, 30), 5.0), written=written
    )
    await write_splits(object_store, "ACME", [Split(date(2020, 7, 1), 3.0, 1.0)], written=written)
    paid = [Dividend(date(2020, 5, 14), 0.5), Dividend(date(2020, 8, 13), 0.25)]
    await write_dividends(object_store, "ACME", paid, written=written)
    patched = refreshed(old, written)
    assert patched.dividend_records() == paid
    assert encode_history(patched) == await current_bytes(object_store, "ACME")
    assert patched.price_series().dates[-4:] == [b.date for b in changed]


async def test_unreadable_history_reads_as_missing(
    object_store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(object_store)
    await object_store.put(history_key("ACME"), b"PAR1 not parquet")
    with caplog.at_level(logging.WARNING):
        assert await read_history(object_store, "ACME") is None
    assert "history/v1/ACME/data.parquet" in caplog.text


def test_a_history_of_another_shape_is_corrupt() -> None:
    month = encode_rows([(date(2020, 1, 2), 1.0, 1.0, 1.0, 1.0, 1)], PRICE_SCHEMA)
    with pytest.raises(CorruptObjectError, match="history/v1/ACME"):
        decode_history("ACME", month)


async def test_dividends_never_fetched_differ_from_none_paid(object_store: ObjectStore) -> None:
    await seed(object_store)
    await write_history(object_store, await build_history(object_store, "ACME"))
    never = await read_history(object_store, "ACME")
    assert never is not None and never.dividend_records() is None
    assert await read_dividends(object_store, "ACME") is None

    await write_dividends(object_store, "ACME", [])  # fetched: the source has none
    assert await read_dividends(object_store, "ACME") == []
    await write_history(object_store, await build_history(object_store, "ACME"))
    none_paid = await read_history(object_store, "ACME")
    assert none_paid is not None and none_paid.dividend_records() == []

    paid = [Dividend(date(2020, 2, 13), 0.5), Dividend(date(2020, 5, 14), 0.5)]
    await write_dividends(object_store, "ACME", paid[1:])
    await write_dividends(object_store, "ACME", paid[:1])  # merged by ex_date
    assert await read_dividends(object_store, "ACME") == paid
    await write_history(object_store, await build_history(object_store, "ACME"))
    history = await read_history(object_store, "ACME", price_columns=("close",), quarter_columns=())
    assert history is not None and history.dividend_records() == paid


async def test_a_history_written_before_dividends_reads_as_never_fetched(
    object_store: ObjectStore,
) -> None:
    await seed(object_store)
    current = encode_history(await build_history(object_store, "ACME"))
    table = pq.read_table(io.BytesIO(current))
    old = table.drop_columns(["dividend_ex_date", "dividend_amount", "dividends_fetched"])
    await object_store.put(history_key("ACME"), encode_table(old))
    history = await read_history(object_store, "ACME")
    assert history is not None and history.dividend_records() is None
    assert history.split_records() == await read_splits(object_store, "ACME")
