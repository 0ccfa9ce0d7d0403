"""Parquet encoding of the stored objects: the schemas, deterministic writes, checked reads."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.market.records import QuarterFundamentals
from services.storage.object_store import ObjectStoreError

PRICE_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
    ]
)
FUNDAMENTAL_COLUMNS = tuple(f.name for f in fields(QuarterFundamentals))
FUNDAMENTALS_SCHEMA = pa.schema(
    [pa.field("period_end_date", pa.date32(), nullable=False)]
    + [pa.field(name, pa.float64()) for name in FUNDAMENTAL_COLUMNS[1:]]
)
SPLITS_SCHEMA = pa.schema(
    [
        pa.field("ex_date", pa.date32(), nullable=False),
        pa.field("to_factor", pa.float64(), nullable=False),
        pa.field("for_factor", pa.float64(), nullable=False),
    ]
)
DIVIDENDS_SCHEMA = pa.schema(
    [
        pa.field("ex_date", pa.date32(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
    ]
)
# Pinned so the same rows always encode to the same bytes (no timestamps are written).
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": False,
    "write_page_index": False,
}


class CorruptObjectError(ObjectStoreError):
    """An object that is not a readable Parquet file of the expected schema."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt object {key!r}: {reason}")
        self.key = key


def encode_rows(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> bytes:
    """Parquet bytes of `rows` (tuples in schema order, already sorted), deterministic."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    table = pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)],
        schema=schema,
    )
    return encode_table(table)


def encode_table(table: pa.Table) -> bytes:
    """Parquet bytes of `table` with the pinned options: same table, same bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **_WRITE_OPTIONS)
    return sink.getvalue()


def decode_table(
    key: str, data: bytes, schema: pa.Schema, columns: Sequence[str] | None = None
) -> pa.Table:
    """The object's rows as a table of `schema` (or its `columns`); CorruptObjectError if not."""
    return decode_as(key, data, projection(schema, columns))


def projection(schema: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    """`schema` narrowed to `columns` (all of it when None)."""
    return pa.schema([schema.field(name) for name in columns]) if columns else schema


def decode_as(key: str, data: bytes, wanted: pa.Schema) -> pa.Table:
    """The object's rows as a table of exactly `wanted`; CorruptObjectError if not."""
    try:
        # pre_buffer only helps remote files; for an in-memory object it is pure overhead.
        parquet = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False)
        table = parquet.read(columns=wanted.names, use_threads=False)
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise CorruptObjectError(key, f"not a readable Parquet file ({exc})") from exc
    if table.schema.equals(wanted):  # the common case: an object this module wrote
        return table
    if table.schema.names != wanted.names or table.schema.types != wanted.types:
        raise CorruptObjectError(key, f"schema {table.schema} does not match {wanted}")
    try:
        return pa.Table.from_arrays(table.columns, schema=wanted)
    except (pa.ArrowException, ValueError) as exc:
        raise CorruptObjectError(key, f"unexpected nulls ({exc})") from exc
