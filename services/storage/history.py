"""The derived per-ticker history object: every bar, quarter, split and dividend in one GET.

`history/v1/{TICKER}/data.parquet` holds one row whose columns are lists: the price, fundamentals,
split and dividend columns of the partition objects, each in date order, plus whether the
dividends were ever fetched (an object written before dividends existed lacks those columns,
and reads as "never fetched": any later write replaced it). The partitions stay the source
of truth. Every partition writer deletes the history object before it touches a partition
(market_files), and the per-ticker write path rewrites it afterwards under the ticker's write
lock, so an object that exists matches the partitions; a missing or unreadable one is read from
the partitions instead and rebuilt by whoever next holds the lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from services.market.records import Dividend, QuarterFundamentals, Split
from services.storage.keys import dividends_key, history_key, partition_of, splits_key
from services.storage.market_files import (
    PriceSeries,
    date_window,
    read_dividend_table,
    read_fundamental_table,
    read_prices,
    read_split_table,
    table_rows,
)
from services.storage.object_store import ObjectStore
from services.storage.parquet import (
    DIVIDENDS_SCHEMA,
    FUNDAMENTALS_SCHEMA,
    PRICE_SCHEMA,
    SPLITS_SCHEMA,
    CorruptObjectError,
    decode_as,
    decode_table,
    encode_table,
    projection,
)
from services.tickers import normalize_ticker

log = logging.getLogger(__name__)

_SECTIONS = (PRICE_SCHEMA, FUNDAMENTALS_SCHEMA, SPLITS_SCHEMA)
# The dividend section's columns are prefixed: the splits section already has an `ex_date`.
_DIVIDEND_PREFIX = "dividend_"
_DIVIDEND_SECTION = pa.schema(
    [pa.field(_DIVIDEND_PREFIX + field.name, field.type, False) for field in DIVIDENDS_SCHEMA]
)
_DIVIDENDS_FETCHED = pa.field("dividends_fetched", pa.bool_(), nullable=False)
_BASE_FIELDS = [
    pa.field(field.name, pa.list_(field.type)) for schema in _SECTIONS for field in schema
]
HISTORY_SCHEMA = pa.schema(
    [
        *_BASE_FIELDS,
        *(pa.field(field.name, pa.list_(field.type)) for field in _DIVIDEND_SECTION),
        _DIVIDENDS_FETCHED,
    ]
)


@dataclass(frozen=True)
class TickerHistory:
    """A ticker's prices, quarters, splits and dividends as date-sorted tables.

    Prices and quarters may be column subsets; `dividends` is None when never fetched.
    """

    ticker: str
    prices: pa.Table
    quarters: pa.Table
    splits: pa.Table
    dividends: pa.Table | None = None

    def price_series(self, start: date | None = None, end: date | None = None) -> PriceSeries:
        """The bars with start <= date <= end, as the month-file reader returns them."""
        return PriceSeries(self.ticker, date_window(self.prices, start, end))

    def quarter_records(self, start: date | None, end: date | None) -> list[QuarterFundamentals]:
        """Quarters with start <= period end <= end; columns not read stay None."""
        table = date_window(self.quarters, start, end)
        names = table.column_names
        return [
            QuarterFundamentals(**dict(zip(names, row, strict=True))) for row in table_rows(table)
        ]

    def split_records(self) -> list[Split]:
        """Every split, sorted by ex_date."""
        return [Split(*row) for row in table_rows(self.splits)]

    def dividend_records(self) -> list[Dividend] | None:
        """Every dividend, sorted by ex_date; None when they were never fetched."""
        if self.dividends is None:
            return None
        return [Dividend(*row) for row in table_rows(self.dividends)]


def encode_history(history: TickerHistory) -> bytes:
    """The object's bytes (the tables must have every column); same history, same bytes."""
    arrays = []
    for table, schema in zip(
        (history.prices, history.quarters, history.splits), _SECTIONS, strict=True
    ):
        for field in schema:
            flat = table.column(field.name).combine_chunks()
            offsets = pa.array([0, len(flat)], pa.int32())
            arrays.append(pa.ListArray.from_arrays(offsets, flat, type=pa.list_(field.type)))
    dividends = DIVIDENDS_SCHEMA.empty_table() if history.dividends is None else history.dividends
    for field in DIVIDENDS_SCHEMA:
        flat = dividends.column(field.name).combine_chunks()
        offsets = pa.array([0, len(flat)], pa.int32())
        arrays.append(pa.ListArray.from_arrays(offsets, flat, type=pa.list_(field.type)))
    arrays.append(pa.array([history.dividends is not None], pa.bool_()))
    return encode_table(pa.Table.from_arrays(arrays, schema=HISTORY_SCHEMA))


def decode_history(
    ticker: str,
    data: bytes,
    *,
    price_columns: Sequence[str] | None = None,
    quarter_columns: Sequence[str] | None = None,
) -> TickerHistory:
    """The history in `data`, narrowed to the columns asked for; CorruptObjectError if unreadable.

    `quarter_columns=()` skips the fundamentals; the date column is always read.
    """
    key = history_key(ticker)
    wanted = (
        _narrowed(PRICE_SCHEMA, price_columns),
        pa.schema([]) if quarter_columns == () else _narrowed(FUNDAMENTALS_SCHEMA, quarter_columns),
        SPLITS_SCHEMA,
    )
    columns = [HISTORY_SCHEMA.field(name) for schema in wanted for name in schema.names]
    dividend_columns = [HISTORY_SCHEMA.field(name) for name in _DIVIDEND_SECTION.names]
    try:
        table = decode_as(key, data, pa.schema([*columns, *dividend_columns, _DIVIDENDS_FETCHED]))
    except CorruptObjectError:
        # An object from before dividends were stored: readable, with dividends never fetched.
        table = decode_as(key, data, pa.schema(columns))
    if table.num_rows != 1:
        raise CorruptObjectError(key, f"{table.num_rows} rows instead of 1")
    prices, quarters, splits = (_section(key, table, schema) for schema in wanted)
    dividends = None
    if _DIVIDENDS_FETCHED.name in table.column_names and table.column(_DIVIDENDS_FETCHED.name)[0]:
        section = _section(key, table, _DIVIDEND_SECTION)
        dividends = pa.Table.from_arrays(section.columns, schema=DIVIDENDS_SCHEMA)
    return TickerHistory(normalize_ticker(ticker), prices, quarters, splits, dividends)


def _narrowed(schema: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    """`schema` cut to `columns` in schema order, always with its date column first."""
    if columns is None:
        return schema
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}")
    first = schema.names[0]
    return projection(schema, [n for n in schema.names if n in columns or n == first])


def _section(key: str, table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in schema:
        values = table.column(field.name).combine_chunks().flatten()
        if not field.nullable and values.null_count:
            raise CorruptObjectError(key, f"column {field.name} has nulls")
        arrays.append(values)
    if len({len(a) for a in arrays}) > 1:
        raise CorruptObjectError(key, "columns of one section differ in length")
    return pa.Table.from_arrays(arrays, schema=schema)


async def read_history(
    store: ObjectStore,
    ticker: str,
    *,
    price_columns: Sequence[str] | None = None,
    quarter_columns: Sequence[str] | None = None,
) -> TickerHistory | None:
    """The ticker's history object (one GET), or None when it is missing or unreadable."""
    data = await store.get(history_key(ticker))
    if data is None:
        return None
    try:
        return await asyncio.to_thread(
            decode_history,
            ticker,
            data,
            price_columns=price_columns,
            quarter_columns=quarter_columns,
        )
    except CorruptObjectError as exc:
        log.warning("%s; reading the partitions instead", exc)
        return None


async def build_history(
    store: ObjectStore, ticker: str, *, known: Mapping[str, bytes] | None = None
) -> TickerHistory:
    """The history as the partitions hold it now (reads every partition not in `known`)."""
    symbol = normalize_ticker(ticker)
    prices = await read_prices(store, symbol, known=known)
    quarters = await read_fundamental_table(store, symbol, known=known)
    splits = await read_split_table(store, symbol, known=known)
    dividends = await read_dividend_table(store, symbol, known=known)
    return TickerHistory(symbol, prices.table, quarters, splits, dividends)


async def write_history(store: ObjectStore, history: TickerHistory) -> None:
    """Store `history` as the ticker's history object."""
    data = await asyncio.to_thread(encode_history, history)
    await store.put(history_key(history.ticker), data)


def refreshed(old: TickerHistory, written: Mapping[str, bytes]) -> TickerHistory:
    """`old` (complete, current before the writes) with the rewritten partitions swapped in.

    `written` maps each partition key a writer just stored to its new bytes; rows of those
    partitions are replaced wholesale, so the result equals a rebuild from the partitions.
    """
    symbol = old.ticker
    prefixes = {
        "prices": f"prices/v1/{symbol}/",
        "fundamentals": f"fundamentals/v1/{symbol}/",
    }
    price_parts = _parts(written, prefixes["prices"])
    quarter_parts = _parts(written, prefixes["fundamentals"])
    prices = _swap(
        old.prices,
        {k: decode_table(k, written[k], PRICE_SCHEMA) for k in price_parts},
        _month_ids(old.prices.column(0)),
        {y * 12 + m for y, m in price_parts.values()},
    )
    quarters = _swap(
        old.quarters,
        {k: decode_table(k, written[k], FUNDAMENTALS_SCHEMA) for k in quarter_parts},
        _quarter_ids(old.quarters.column(0)),
        {y * 4 + q - 1 for y, q in quarter_parts.values()},
    )
    split_key = splits_key(symbol)
    splits = (
        decode_table(split_key, written[split_key], SPLITS_SCHEMA)
        if split_key in written
        else old.splits
    )
    dividend_key = dividends_key(symbol)
    dividends = (
        decode_table(dividend_key, written[dividend_key], DIVIDENDS_SCHEMA)
        if dividend_key in written
        else old.dividends
    )
    return TickerHistory(symbol, prices, quarters, splits, dividends)


def _parts(written: Mapping[str, bytes], prefix: str) -> dict[str, tuple[int, int]]:
    return {
        key: part
        for key in written
        if key.startswith(prefix) and (part := partition_of(key, prefix)) is not None
    }


def _swap(
    old: pa.Table, new: dict[str, pa.Table], old_ids: pa.Array, replaced: set[int]
) -> pa.Table:
    if not new:
        return old
    keep = pc.invert(pc.is_in(old_ids, value_set=pa.array(sorted(replaced), pa.int64())))
    merged = pa.concat_tables([old.filter(keep), *new.values()])
    return merged.sort_by(merged.column_names[0])


def _month_ids(days: pa.ChunkedArray) -> pa.Array:
    return pc.add(pc.multiply(pc.year(days), 12), pc.month(days))


def _quarter_ids(days: pa.ChunkedArray) -> pa.Array:
    return pc.add(pc.multiply(pc.year(days), 4), pc.subtract(pc.quarter(days), 1))
