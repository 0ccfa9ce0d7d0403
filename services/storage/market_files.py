"""Market data files in the object store: merging writers and partition-pruned readers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple
from datetime import date
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from services.market.records import (
    Dividend,
    PriceBar,
    QuarterFundamentals,
    Split,
    dividend_problem,
    fundamentals_problem,
    price_bar_problem,
    split_problem,
)
from services.storage.keys import (
    dividends_key,
    fundamentals_key,
    history_key,
    months_between,
    partition_of,
    price_key,
    splits_key,
)
from services.storage.object_store import ObjectStore
from services.storage.parquet import (
    DIVIDENDS_SCHEMA,
    FUNDAMENTALS_SCHEMA,
    PRICE_SCHEMA,
    SPLITS_SCHEMA,
    decode_as,
    decode_table,
    encode_rows,
    projection,
)
from services.tickers import normalize_ticker

_WRITE_CONCURRENCY = 8
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class InvalidRecordError(ValueError):
    """A record the writers refuse (NaN, negative price, wrong date type); nothing is written."""


def _check(problem: str | None, ticker: str, what: str, when: object) -> None:
    if problem:
        raise InvalidRecordError(f"{ticker} {what} {when}: {problem}")


# --- writers ----------------------------------------------------------------------------


# Partition writers fill this (key -> the bytes now stored) when the caller passes one.
Written = dict[str, bytes]


async def _merge_into(
    store: ObjectStore, key: str, rows: dict[date, tuple[Any, ...]], schema: pa.Schema
) -> bytes:
    """Rewrite `key` with the union of its rows and `rows` (new win per date), sorted."""
    existing = await store.get(key)
    merged: dict[date, tuple[Any, ...]] = {}
    if existing is not None:
        merged = {row[0]: row for row in table_rows(decode_table(key, existing, schema))}
    merged.update(rows)
    data = encode_rows([merged[day] for day in sorted(merged)], schema)
    if data != existing:  # unchanged objects are not rewritten
        await store.put(key, data)
    return data


async def _write_partitions(
    store: ObjectStore,
    ticker: str,
    partitions: dict[str, dict[date, tuple[Any, ...]]],
    schema: pa.Schema,
    written: Written | None,
) -> list[str]:
    if not partitions:
        return []
    # The derived history goes first: from here until its rewrite it is missing, never stale.
    # Once per write: a caller collecting `written` across writers deleted it at the first.
    if not written:
        await store.delete(history_key(ticker))
    gate = asyncio.Semaphore(_WRITE_CONCURRENCY)

    async def one(key: str) -> None:
        async with gate:
            data = await _merge_into(store, key, partitions[key], schema)
            if written is not None:
                written[key] = data

    await asyncio.gather(*(one(key) for key in partitions))
    return sorted(partitions)


async def write_prices(
    store: ObjectStore, ticker: str, bars: Iterable[PriceBar], *, written: Written | None = None
) -> list[str]:
    """Merge daily bars into their month objects; returns the keys holding them, sorted."""
    symbol = normalize_ticker(ticker)
    partitions: dict[str, dict[date, tuple[Any, ...]]] = {}
    for bar in bars:
        _check(price_bar_problem(bar), symbol, "bar", getattr(bar, "date", "?"))
        row = (bar.date, float(bar.open), float(bar.high), float(bar.low), float(bar.close))
        key = price_key(symbol, bar.date.year, bar.date.month)
        partitions.setdefault(key, {})[bar.date] = (*row, int(bar.volume))
    return await _write_partitions(store, symbol, partitions, PRICE_SCHEMA, written)


async def write_fundamentals(
    store: ObjectStore,
    ticker: str,
    quarters: Iterable[QuarterFundamentals],
    *,
    written: Written | None = None,
) -> list[str]:
    """Merge quarters into their `Q{n}` objects (new win per period end); returns keys."""
    symbol = normalize_ticker(ticker)
    partitions: dict[str, dict[date, tuple[Any, ...]]] = {}
    for quarter in quarters:
        _check(fundamentals_problem(quarter), symbol, "quarter", quarter.period_end_date)
        row = tuple(None if v is None else float(v) for v in astuple(quarter)[1:])
        key = fundamentals_key(symbol, quarter.period_end_date)
        partitions.setdefault(key, {})[quarter.period_end_date] = (quarter.period_end_date, *row)
    return await _write_partitions(store, symbol, partitions, FUNDAMENTALS_SCHEMA, written)


async def write_splits(
    store: ObjectStore, ticker: str, splits: Iterable[Split], *, written: Written | None = None
) -> list[str]:
    """Merge splits into the ticker's one splits object (new win per ex_date); returns keys."""
    symbol = normalize_ticker(ticker)
    rows: dict[date, tuple[Any, ...]] = {}
    for split in splits:
        _check(split_problem(split), symbol, "split", split.ex_date)
        rows[split.ex_date] = (split.ex_date, float(split.to_factor), float(split.for_factor))
    partitions = {splits_key(symbol): rows} if rows else {}
    return await _write_partitions(store, symbol, partitions, SPLITS_SCHEMA, written)


async def write_dividends(
    store: ObjectStore,
    ticker: str,
    dividends: Iterable[Dividend],
    *,
    written: Written | None = None,
) -> list[str]:
    """Merge dividends into the ticker's one dividends object (new win per ex_date).

    Called only with what a fetch returned, and writes the object even when that is nothing:
    an existing object, empty or not, is what tells "pays none" from "never fetched".
    """
    symbol = normalize_ticker(ticker)
    rows: dict[date, tuple[Any, ...]] = {}
    for dividend in dividends:
        _check(dividend_problem(dividend), symbol, "dividend", dividend.ex_date)
        rows[dividend.ex_date] = (dividend.ex_date, float(dividend.amount))
    partitions = {dividends_key(symbol): rows}
    return await _write_partitions(store, symbol, partitions, DIVIDENDS_SCHEMA, written)


# --- readers ----------------------------------------------------------------------------


class PriceSeries:
    """A ticker's daily bars as columns (pyarrow), sorted by date, one row per trading day."""

    def __init__(self, ticker: str, table: pa.Table) -> None:
        self.ticker = ticker
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return (
            f"PriceSeries({self.ticker!r}, {len(self)} rows, {self.first_date}..{self.last_date})"
        )

    def column(self, name: str) -> pa.ChunkedArray:
        """One column; KeyError naming what was read when it was not requested."""
        if name not in self.table.column_names:
            raise KeyError(f"column {name!r} was not read (have {self.table.column_names})")
        return self.table.column(name)

    @cached_property
    def dates(self) -> list[date]:
        # Several times faster than date32's to_pylist for a few thousand days.
        from_ordinal, epoch = date.fromordinal, _EPOCH_ORDINAL
        return [from_ordinal(epoch + n) for n in self.day_numbers]

    @cached_property
    def day_numbers(self) -> list[int]:
        """Dates as days since 1970-01-01 (cheap to compare and subtract)."""
        return list(self.column("date").cast(pa.int32()).to_pylist())

    @cached_property
    def opens(self) -> list[float]:
        return list(self.column("open").to_pylist())

    @cached_property
    def highs(self) -> list[float]:
        return list(self.column("high").to_pylist())

    @cached_property
    def lows(self) -> list[float]:
        return list(self.column("low").to_pylist())

    @cached_property
    def closes(self) -> list[float]:
        return list(self.column("close").to_pylist())

    @cached_property
    def volumes(self) -> list[int]:
        return list(self.column("volume").to_pylist())

    @property
    def first_date(self) -> date | None:
        return _date_at(self.table, 0) if len(self) else None

    @property
    def last_date(self) -> date | None:
        return _date_at(self.table, len(self) - 1) if len(self) else None

    def between(self, start: date | None, end: date | None) -> PriceSeries:
        """The rows with start <= date <= end (either bound optional)."""
        return PriceSeries(self.ticker, date_window(self.table, start, end))


def _date_at(table: pa.Table, index: int) -> date:
    value: date = table.column(0)[index].as_py()
    return value


def date_window(table: pa.Table, start: date | None, end: date | None) -> pa.Table:
    """Rows with start <= first column <= end; the table is sorted, so a zero-copy slice."""
    if table.num_rows == 0 or (start is None and end is None):
        return table
    days = table.column(0)
    low = 0 if start is None else _count(pc.less(days, pa.scalar(start, pa.date32())))
    high = (
        table.num_rows if end is None else _count(pc.less_equal(days, pa.scalar(end, pa.date32())))
    )
    return table.slice(low, max(0, high - low))


def _count(mask: pa.ChunkedArray) -> int:
    total: int | None = pc.sum(mask).as_py()
    return total or 0


async def _price_keys(
    store: ObjectStore, symbol: str, start: date | None, end: date | None
) -> list[str]:
    """Month keys that can hold rows in [start, end]; derived when probing beats listing."""
    if start is not None and end is not None and not store.prefers_listing:
        return [price_key(symbol, y, m) for y, m in months_between(start, end)]
    prefix = f"prices/v1/{symbol}/"
    listed = prefix
    if start is not None and end is not None and start.year == end.year:
        listed = f"{prefix}{start.year:04d}/"
    low = (start.year, start.month) if start else (0, 0)
    high = (end.year, end.month) if end else (9999, 12)
    return [
        key
        for key in await store.list(listed)
        if (part := partition_of(key, prefix)) is not None and low <= part <= high
    ]


def _assemble(
    blobs: dict[str, bytes | None], schema: pa.Schema, columns: Sequence[str] | None
) -> pa.Table:
    """Decode and concatenate partitions in key order (= date order); missing ones are gaps."""
    wanted = projection(schema, columns)
    present = sorted((key, data) for key, data in blobs.items() if data is not None)
    tables = [decode_as(key, data, wanted) for key, data in present]
    return pa.concat_tables(tables) if tables else wanted.empty_table()


async def _get_many(
    store: ObjectStore, keys: Sequence[str], known: Mapping[str, bytes] | None
) -> dict[str, bytes | None]:
    """`store.get_many(keys)`, except that keys in `known` (bytes just written) are not fetched."""
    if not known:
        return await store.get_many(keys)
    fetched = await store.get_many([key for key in keys if key not in known])
    return {key: known[key] if key in known else fetched[key] for key in keys}


async def read_prices(
    store: ObjectStore,
    ticker: str,
    start: date | None = None,
    end: date | None = None,
    *,
    columns: Sequence[str] | None = None,
    known: Mapping[str, bytes] | None = None,
) -> PriceSeries:
    """Bars with start <= date <= end, reading only the month partitions of that window.

    Missing months are gaps, not errors; `columns` (must include "date") narrows the read —
    e.g. ("date", "close") for signals. To compute a 200-day SMA from `start`, pass a start
    ~300 calendar days earlier and trim with `PriceSeries.between`. `known`: objects whose
    current bytes the caller holds (it just wrote them, under the ticker's write lock).
    """
    symbol = normalize_ticker(ticker)
    if columns is not None:
        unknown = set(columns) - set(PRICE_SCHEMA.names)
        if unknown:
            raise ValueError(f"unknown price columns {sorted(unknown)}")
        # Schema order with "date" first, whatever order the caller gave.
        columns = [name for name in PRICE_SCHEMA.names if name in columns or name == "date"]
    if start is not None and end is not None and start > end:
        return PriceSeries(symbol, _assemble({}, PRICE_SCHEMA, columns))
    blobs = await _get_many(store, await _price_keys(store, symbol, start, end), known)
    table = await asyncio.to_thread(_assemble, blobs, PRICE_SCHEMA, columns)
    return PriceSeries(symbol, date_window(table, start, end))


async def price_date_range(store: ObjectStore, ticker: str) -> tuple[date, date] | None:
    """(first, last) trading day stored for `ticker`, or None without price data."""
    symbol = normalize_ticker(ticker)
    prefix = f"prices/v1/{symbol}/"
    keys = [k for k in await store.list(prefix) if partition_of(k, prefix)]
    return await _date_range(store, keys, PRICE_SCHEMA)


async def _date_range(
    store: ObjectStore, keys: list[str], schema: pa.Schema
) -> tuple[date, date] | None:
    """(min, max) of the first column over sorted partition `keys`, reading only the ends."""
    first = await _first_or_last(store, keys, schema, pick_last=False)
    last = await _first_or_last(store, keys[::-1], schema, pick_last=True)
    return (first, last) if first is not None and last is not None else None


async def _first_or_last(
    store: ObjectStore, keys: list[str], schema: pa.Schema, *, pick_last: bool
) -> date | None:
    name = schema.names[0]
    for key in keys:  # normally the first key answers; later ones only after a deleted object
        data = await store.get(key)
        if data is not None:
            table = await asyncio.to_thread(decode_table, key, data, schema, (name,))
            if table.num_rows:
                return _date_at(table, table.num_rows - 1 if pick_last else 0)
    return None


async def _fundamental_keys(
    store: ObjectStore, symbol: str, start: date | None, end: date | None
) -> list[str]:
    prefix = f"fundamentals/v1/{symbol}/"
    low = (start.year, (start.month - 1) // 3 + 1) if start else (0, 0)
    high = (end.year, (end.month - 1) // 3 + 1) if end else (9999, 4)
    if start is not None and end is not None and not store.prefers_listing:
        quarters = [(y, q) for y in range(low[0], high[0] + 1) for q in range(1, 5)]
        return [f"{prefix}{y:04d}/Q{q}/data.parquet" for y, q in quarters if low <= (y, q) <= high]
    return [
        key
        for key in await store.list(prefix)
        if (part := partition_of(key, prefix)) is not None and low <= part <= high
    ]


async def read_fundamental_table(
    store: ObjectStore,
    ticker: str,
    start: date | None = None,
    end: date | None = None,
    *,
    known: Mapping[str, bytes] | None = None,
) -> pa.Table:
    """Quarters with start <= period_end_date <= end as a table, sorted by period end."""
    symbol = normalize_ticker(ticker)
    blobs = await _get_many(store, await _fundamental_keys(store, symbol, start, end), known)
    table = await asyncio.to_thread(_assemble, blobs, FUNDAMENTALS_SCHEMA, None)
    return date_window(table, start, end)


async def read_fundamentals(
    store: ObjectStore, ticker: str, start: date | None = None, end: date | None = None
) -> list[QuarterFundamentals]:
    """Quarters with start <= period_end_date <= end, sorted by period end."""
    table = await read_fundamental_table(store, ticker, start, end)
    return [QuarterFundamentals(*row) for row in table_rows(table)]


async def fundamentals_date_range(store: ObjectStore, ticker: str) -> tuple[date, date] | None:
    """(first, last) period end stored for `ticker`, or None without fundamentals."""
    symbol = normalize_ticker(ticker)
    return await _date_range(
        store, await _fundamental_keys(store, symbol, None, None), FUNDAMENTALS_SCHEMA
    )


async def read_split_table(
    store: ObjectStore, ticker: str, *, known: Mapping[str, bytes] | None = None
) -> pa.Table:
    """Every stored split of `ticker` as a table sorted by ex_date (empty when none)."""
    key = splits_key(ticker)
    data = known[key] if known and key in known else await store.get(key)
    if data is None:
        return SPLITS_SCHEMA.empty_table()
    return await asyncio.to_thread(decode_table, key, data, SPLITS_SCHEMA)


async def read_splits(store: ObjectStore, ticker: str) -> list[Split]:
    """Every stored split of `ticker`, sorted by ex_date ([] when none)."""
    return [Split(*row) for row in table_rows(await read_split_table(store, ticker))]


async def read_dividend_table(
    store: ObjectStore, ticker: str, *, known: Mapping[str, bytes] | None = None
) -> pa.Table | None:
    """The ticker's dividends sorted by ex_date; None when they were never fetched."""
    key = dividends_key(ticker)
    data = known[key] if known and key in known else await store.get(key)
    if data is None:
        return None
    return await asyncio.to_thread(decode_table, key, data, DIVIDENDS_SCHEMA)


async def read_dividends(store: ObjectStore, ticker: str) -> list[Dividend] | None:
    """Every stored dividend of `ticker` by ex_date; None when they were never fetched."""
    table = await read_dividend_table(store, ticker)
    return None if table is None else [Dividend(*row) for row in table_rows(table)]


async def tickers_with_dividends(store: ObjectStore) -> set[str]:
    """Tickers whose dividends were fetched at least once (one listing)."""
    prefix = "dividends/v1/"
    keys = await store.list(prefix)
    return {
        parts[0]
        for key in keys
        if len(parts := key[len(prefix) :].split("/")) == 2 and parts[1] == "data.parquet"
    }


def table_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The table's rows as tuples of Python values."""
    return list(zip(*(col.to_pylist() for col in table.columns), strict=True))
