"""The Parquet layout on both backends: keys, schemas, merges, pruning, errors."""

from __future__ import annotations

import io
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.errors import BadUserInput
from services.market.records import PriceBar, QuarterFundamentals, Split
from services.storage.keys import fundamentals_key, price_key, splits_key
from services.storage.local import LocalObjectStore
from services.storage.market_files import (
    InvalidRecordError,
    fundamentals_date_range,
    price_date_range,
    read_fundamentals,
    read_prices,
    read_splits,
    write_fundamentals,
    write_prices,
    write_splits,
)
from services.storage.object_store import ObjectStore
from services.storage.parquet import CorruptObjectError
from tests.fixtures.object_store import CountingStore


def weekdays(start: date, end: date) -> list[date]:
    days = (start + timedelta(n) for n in range((end - start).days + 1))
    return [d for d in days if d.weekday() < 5]


def bars(start: date, end: date, base: float = 100.0) -> list[PriceBar]:
    """Deterministic bars whose values encode the day, so mix-ups are visible."""
    out = []
    for d in weekdays(start, end):
        value = base + d.toordinal() % 97 + d.day / 100
        out.append(PriceBar(d, value, value + 1.5, value - 1.25, value + 0.5, d.toordinal() * 10))
    return out


async def snapshot(store: ObjectStore) -> dict[str, bytes | None]:
    return await store.get_many(await store.list())


def test_keys_follow_the_spec() -> None:
    assert price_key("aapl", 2024, 3) == "prices/v1/AAPL/2024/03/data.parquet"
    assert price_key("BRK.B", 2011, 12) == "prices/v1/BRK.B/2011/12/data.parquet"
    assert (
        fundamentals_key("msft", date(2023, 3, 31)) == "fundamentals/v1/MSFT/2023/Q1/data.parquet"
    )
    assert fundamentals_key("MSFT", date(2023, 4, 1)).endswith("/2023/Q2/data.parquet")
    assert fundamentals_key("MSFT", date(2023, 9, 30)).endswith("/2023/Q3/data.parquet")
    assert fundamentals_key("MSFT", date(2023, 12, 31)).endswith("/2023/Q4/data.parquet")
    assert splits_key("nvda") == "splits/v1/NVDA/data.parquet"
    with pytest.raises(BadUserInput):
        price_key("../etc", 2024, 1)


async def test_prices_round_trip_across_month_and_year_boundaries(
    object_store: ObjectStore,
) -> None:
    data = bars(date(2019, 11, 25), date(2020, 2, 5))
    keys = await write_prices(object_store, "aapl", reversed(data))
    assert keys == [
        "prices/v1/AAPL/2019/11/data.parquet",
        "prices/v1/AAPL/2019/12/data.parquet",
        "prices/v1/AAPL/2020/01/data.parquet",
        "prices/v1/AAPL/2020/02/data.parquet",
    ]
    assert await object_store.list() == keys
    series = await read_prices(object_store, "AAPL")
    assert series.ticker == "AAPL" and len(series) == len(data)
    assert series.dates == [b.date for b in data]
    assert series.opens == [b.open for b in data]
    assert series.highs == [b.high for b in data]
    assert series.lows == [b.low for b in data]
    assert series.closes == [b.close for b in data]
    assert series.volumes == [b.volume for b in data]
    assert series.day_numbers[0] == (data[0].date - date(1970, 1, 1)).days
    window = await read_prices(object_store, "aapl", date(2019, 12, 28), date(2020, 1, 2))
    assert window.dates == [
        date(2019, 12, 30),
        date(2019, 12, 31),
        date(2020, 1, 1),
        date(2020, 1, 2),
    ]
    assert (window.first_date, window.last_date) == (date(2019, 12, 30), date(2020, 1, 2))
    assert series.between(date(2019, 12, 28), date(2020, 1, 2)).closes == window.closes
    assert (await read_prices(object_store, "AAPL", start=date(2020, 2, 4))).dates == [
        date(2020, 2, 4),
        date(2020, 2, 5),
    ]
    assert len(await read_prices(object_store, "AAPL", end=date(2019, 11, 26))) == 2


async def test_price_objects_have_the_spec_schema_sorted_and_zstd(
    object_store: ObjectStore,
) -> None:
    await write_prices(object_store, "AAPL", bars(date(2021, 3, 1), date(2021, 3, 31)))
    raw = await object_store.get("prices/v1/AAPL/2021/03/data.parquet")
    assert raw is not None
    parquet = pq.ParquetFile(io.BytesIO(raw))
    table = parquet.read()
    assert table.schema.names == ["date", "open", "high", "low", "close", "volume"]
    assert table.schema.types == [pa.date32()] + [pa.float64()] * 4 + [pa.int64()]
    days = table.column("date").to_pylist()
    assert days == sorted(set(days)) and len(days) == 23
    meta = parquet.metadata
    assert {meta.row_group(0).column(i).compression for i in range(6)} == {"ZSTD"}
    assert b"time" not in (meta.metadata or {}).get(b"ARROW:schema", b"")


async def test_writes_are_idempotent_and_byte_identical(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    data = bars(date(2022, 12, 1), date(2023, 2, 28))
    quarters = [QuarterFundamentals(date(2022, 12, 31), sales=5.0, diluted_eps=1.25)]
    splits = [Split(date(2023, 1, 9), 4.0, 1.0)]
    await write_prices(object_store, "IDEM", data)
    await write_fundamentals(object_store, "IDEM", quarters)
    await write_splits(object_store, "IDEM", splits)
    first = await snapshot(object_store)
    counting = CountingStore(object_store)
    await write_prices(counting, "IDEM", data)
    await write_fundamentals(counting, "IDEM", quarters)
    await write_splits(counting, "IDEM", splits)
    assert counting.puts == []  # nothing changed, nothing rewritten
    assert await snapshot(object_store) == first
    elsewhere = LocalObjectStore(tmp_path / "elsewhere")
    await write_splits(elsewhere, "IDEM", splits)
    await write_fundamentals(elsewhere, "IDEM", quarters)
    await write_prices(elsewhere, "IDEM", list(reversed(data)))
    assert await snapshot(elsewhere) == first


async def test_updating_a_month_merges_sorted_and_new_values_win(
    object_store: ObjectStore,
) -> None:
    await write_prices(object_store, "MRG", bars(date(2024, 1, 2), date(2024, 1, 10)))
    newer = bars(date(2024, 1, 8), date(2024, 1, 19), base=500.0)
    keys = await write_prices(object_store, "MRG", newer)
    assert keys == ["prices/v1/MRG/2024/01/data.parquet"]
    series = await read_prices(object_store, "MRG", date(2024, 1, 1), date(2024, 1, 31))
    assert series.dates == weekdays(date(2024, 1, 2), date(2024, 1, 19))
    by_day = dict(zip(series.dates, series.closes, strict=True))
    assert by_day[date(2024, 1, 5)] < 300 < by_day[date(2024, 1, 8)]
    assert [by_day[b.date] for b in newer] == [b.close for b in newer]


async def test_last_bar_wins_within_one_call(object_store: ObjectStore) -> None:
    day = date(2024, 5, 6)
    await write_prices(
        object_store,
        "DUP",
        [PriceBar(day, 1, 1, 1, 1.0, 1), PriceBar(day, 2, 2, 2, 2.0, 2)],
    )
    series = await read_prices(object_store, "DUP")
    assert (series.closes, series.volumes) == ([2.0], [2])


async def test_readers_touch_only_the_window_partitions(object_store: ObjectStore) -> None:
    await write_prices(object_store, "PRN", bars(date(2018, 1, 1), date(2021, 12, 31)))
    await write_prices(object_store, "PRNX", bars(date(2020, 1, 1), date(2020, 12, 31)))
    counting = CountingStore(object_store)
    series = await read_prices(counting, "PRN", date(2020, 3, 5), date(2020, 4, 20))
    assert series.first_date == date(2020, 3, 5) and series.last_date == date(2020, 4, 20)
    assert counting.gets == [
        "prices/v1/PRN/2020/03/data.parquet",
        "prices/v1/PRN/2020/04/data.parquet",
    ]
    if object_store.prefers_listing:
        assert counting.lists == ["prices/v1/PRN/2020/"]
    else:
        assert counting.lists == []
    counting.reset()
    await read_prices(counting, "PRN", date(2019, 11, 15), date(2020, 2, 1))
    assert [k.split("/", 3)[3] for k in counting.gets] == [
        "2019/11/data.parquet",
        "2019/12/data.parquet",
        "2020/01/data.parquet",
        "2020/02/data.parquet",
    ]
    assert len(counting.lists) <= 1
    counting.reset()
    everything = await read_prices(counting, "PRN")
    assert len(counting.gets) == 48 and all("/PRN/" in k for k in counting.gets)
    assert len(everything) == len(weekdays(date(2018, 1, 1), date(2021, 12, 31)))


async def test_missing_partitions_are_gaps(object_store: ObjectStore) -> None:
    await write_prices(object_store, "GAP", bars(date(2023, 1, 1), date(2023, 1, 31)))
    await write_prices(object_store, "GAP", bars(date(2023, 3, 1), date(2023, 3, 31)))
    series = await read_prices(object_store, "GAP", date(2022, 6, 1), date(2023, 6, 30))
    assert {d.month for d in series.dates} == {1, 3}
    assert series.dates == sorted(series.dates)
    empty = await read_prices(object_store, "NONE", date(2023, 1, 1), date(2023, 12, 31))
    assert len(empty) == 0 and empty.dates == [] and empty.first_date is None
    backwards = await read_prices(object_store, "GAP", date(2023, 3, 1), date(2023, 1, 1))
    assert len(backwards) == 0


async def test_column_projection(object_store: ObjectStore) -> None:
    await write_prices(object_store, "COL", bars(date(2023, 1, 1), date(2023, 2, 28)))
    series = await read_prices(object_store, "COL", columns=["close"])
    assert series.table.column_names == ["date", "close"]
    assert len(series.closes) == len(series.dates) == len(series)
    with pytest.raises(KeyError, match="volume"):
        _ = series.volumes
    with pytest.raises(ValueError, match="adj_close"):
        await read_prices(object_store, "COL", columns=["adj_close"])


@pytest.mark.parametrize(
    "payload",
    [b"definitely not parquet", b"PAR1" + b"\x00" * 40 + b"PAR1", b""],
    ids=["garbage", "truncated", "empty"],
)
async def test_corrupt_object_is_a_clear_error(object_store: ObjectStore, payload: bytes) -> None:
    await write_prices(object_store, "BAD", bars(date(2023, 1, 1), date(2023, 2, 28)))
    key = "prices/v1/BAD/2023/02/data.parquet"
    await object_store.put(key, payload)
    with pytest.raises(CorruptObjectError, match="prices/v1/BAD/2023/02") as caught:
        await read_prices(object_store, "BAD", date(2023, 1, 1), date(2023, 2, 28))
    assert caught.value.key == key
    jan = await read_prices(object_store, "BAD", date(2023, 1, 1), date(2023, 1, 31))
    assert len(jan) > 0  # other partitions are still readable
    with pytest.raises(CorruptObjectError):
        await write_prices(object_store, "BAD", bars(date(2023, 2, 1), date(2023, 2, 3)))
    assert await object_store.get(key) == payload  # a failed merge never overwrites


async def test_object_with_the_wrong_schema_is_corrupt(object_store: ObjectStore) -> None:
    await write_splits(object_store, "WRONG", [Split(date(2020, 1, 6), 2, 1)])
    splits_bytes = await object_store.get(splits_key("WRONG"))
    assert splits_bytes is not None
    await object_store.put(price_key("WRONG", 2020, 1), splits_bytes)
    with pytest.raises(CorruptObjectError, match="schema"):
        await read_prices(object_store, "WRONG", date(2020, 1, 1), date(2020, 1, 31))


@pytest.mark.parametrize(
    "bad",
    [
        PriceBar(date(2023, 1, 4), 1.0, 1.0, 1.0, math.nan, 10),
        PriceBar(date(2023, 1, 4), 1.0, 1.0, -0.5, 1.0, 10),
        PriceBar(date(2023, 1, 4), 1.0, math.inf, 1.0, 1.0, 10),
        PriceBar(date(2023, 1, 4), 1.0, 1.0, 1.0, 1.0, -1),
        PriceBar(date(2023, 1, 4), 1.0, 1.0, 1.0, 1.0, 1.5),  # type: ignore[arg-type]
        PriceBar(datetime(2023, 1, 4, 9, 30), 1.0, 1.0, 1.0, 1.0, 10),
    ],
    ids=["nan", "negative", "inf", "negative-volume", "float-volume", "datetime"],
)
async def test_invalid_bars_are_refused_and_nothing_is_written(
    object_store: ObjectStore, bad: PriceBar
) -> None:
    good = bars(date(2023, 1, 2), date(2023, 1, 3))
    with pytest.raises(InvalidRecordError, match="INV"):
        await write_prices(object_store, "INV", [*good, bad])
    assert await object_store.list() == []


async def test_fundamentals_round_trip_and_quarter_keys(object_store: ObjectStore) -> None:
    quarters = [
        QuarterFundamentals(
            date(2023, 3, 31), 100.0, 30.0, 25.0, 20.0, 1.5, 10.0, 7.0, 3.0, 1.5, 1.4
        ),
        QuarterFundamentals(date(2022, 12, 31), sales=90.0, eps_reported=1.2),
        QuarterFundamentals(date(2023, 7, 1), sales=110.0, total_debt=0.0),
        QuarterFundamentals(date(2021, 9, 25), sales=80.0),
    ]
    keys = await write_fundamentals(object_store, "fun", quarters)
    assert keys == [
        "fundamentals/v1/FUN/2021/Q3/data.parquet",
        "fundamentals/v1/FUN/2022/Q4/data.parquet",
        "fundamentals/v1/FUN/2023/Q1/data.parquet",
        "fundamentals/v1/FUN/2023/Q3/data.parquet",
    ]
    stored = await read_fundamentals(object_store, "FUN")
    assert stored == sorted(quarters, key=lambda q: q.period_end_date)
    assert stored[1].ebitda is None and stored[3].total_debt == 0.0
    window = await read_fundamentals(object_store, "FUN", date(2022, 1, 1), date(2023, 3, 31))
    assert [q.period_end_date for q in window] == [date(2022, 12, 31), date(2023, 3, 31)]
    assert await fundamentals_date_range(object_store, "FUN") == (
        date(2021, 9, 25),
        date(2023, 7, 1),
    )
    revised = QuarterFundamentals(date(2023, 3, 31), sales=101.0)
    assert await write_fundamentals(object_store, "FUN", [revised]) == [keys[2]]
    assert (await read_fundamentals(object_store, "FUN"))[2] == revised
    raw = await object_store.get(keys[2])
    assert raw is not None
    schema = pq.read_schema(io.BytesIO(raw))
    assert schema.field("period_end_date").type == pa.date32()
    assert all(schema.field(n).type == pa.float64() for n in schema.names[1:])
    assert await read_fundamentals(object_store, "NOPE") == []
    assert await fundamentals_date_range(object_store, "NOPE") is None


async def test_fundamentals_refuse_nan(object_store: ObjectStore) -> None:
    with pytest.raises(InvalidRecordError, match="sales"):
        await write_fundamentals(
            object_store, "NAN", [QuarterFundamentals(date(2023, 3, 31), sales=math.nan)]
        )
    assert await object_store.list() == []


async def test_splits_round_trip_and_merge(object_store: ObjectStore) -> None:
    assert await read_splits(object_store, "SPL") == []
    assert await write_splits(object_store, "SPL", []) == []
    assert await object_store.list() == []
    await write_splits(object_store, "spl", [Split(date(2020, 8, 31), 4, 1)])
    keys = await write_splits(
        object_store, "SPL", [Split(date(2014, 6, 9), 7, 1), Split(date(2020, 8, 31), 4.0, 1.0)]
    )
    assert keys == ["splits/v1/SPL/data.parquet"]
    assert await read_splits(object_store, "SPL") == [
        Split(date(2014, 6, 9), 7.0, 1.0),
        Split(date(2020, 8, 31), 4.0, 1.0),
    ]
    with pytest.raises(InvalidRecordError, match="for_factor"):
        await write_splits(object_store, "SPL", [Split(date(2021, 1, 4), 2, 0)])


async def test_price_date_range(object_store: ObjectStore) -> None:
    assert await price_date_range(object_store, "RNG") is None
    await write_prices(object_store, "RNG", bars(date(2015, 6, 10), date(2016, 2, 3)))
    await write_prices(object_store, "RNG", bars(date(2024, 7, 1), date(2024, 7, 3)))
    counting = CountingStore(object_store)
    assert await price_date_range(counting, "RNG") == (date(2015, 6, 10), date(2024, 7, 3))
    assert len(counting.gets) == 2


async def test_invalid_ticker_is_bad_user_input(object_store: ObjectStore) -> None:
    with pytest.raises(BadUserInput):
        await read_prices(object_store, "../../etc")
    with pytest.raises(BadUserInput):
        await write_prices(object_store, "", bars(date(2023, 1, 2), date(2023, 1, 3)))


async def test_fundamentals_reader_touches_only_window_quarters(object_store: ObjectStore) -> None:
    quarters = [
        QuarterFundamentals(date(y, m, 28), sales=float(y))
        for y in range(2015, 2025)
        for m in (3, 6, 9, 12)
    ]
    await write_fundamentals(object_store, "QWIN", quarters)
    counting = CountingStore(object_store)
    window = await read_fundamentals(counting, "QWIN", date(2022, 2, 1), date(2023, 5, 1))
    assert [q.period_end_date for q in window] == [
        date(2022, 3, 28),
        date(2022, 6, 28),
        date(2022, 9, 28),
        date(2022, 12, 28),
        date(2023, 3, 28),
    ]
    window_keys = {fundamentals_key("QWIN", q.period_end_date) for q in window}
    window_keys.add(fundamentals_key("QWIN", date(2023, 4, 1)))  # Q2 2023 holds no row <= May 1
    assert set(counting.gets) == window_keys
    assert counting.lists == ([] if not object_store.prefers_listing else ["fundamentals/v1/QWIN/"])
