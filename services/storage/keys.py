"""Object keys of the Parquet layout (docs/architecture.md) and the partitions they name."""

from __future__ import annotations

from datetime import date

from services.tickers import normalize_ticker


def price_key(ticker: str, year: int, month: int) -> str:
    """`prices/v1/{TICKER}/{YYYY}/{MM}/data.parquet`."""
    return f"prices/v1/{normalize_ticker(ticker)}/{year:04d}/{month:02d}/data.parquet"


def fundamentals_key(ticker: str, period_end: date) -> str:
    """`fundamentals/v1/{TICKER}/{YYYY}/Q{n}/data.parquet`, n = period end's calendar quarter."""
    quarter = (period_end.month - 1) // 3 + 1
    return (
        f"fundamentals/v1/{normalize_ticker(ticker)}/{period_end.year:04d}/Q{quarter}/data.parquet"
    )


def splits_key(ticker: str) -> str:
    """`splits/v1/{TICKER}/data.parquet`."""
    return f"splits/v1/{normalize_ticker(ticker)}/data.parquet"


def dividends_key(ticker: str) -> str:
    """`dividends/v1/{TICKER}/data.parquet`; its absence means "never fetched", not "none"."""
    return f"dividends/v1/{normalize_ticker(ticker)}/data.parquet"


def history_key(ticker: str) -> str:
    """`history/v1/{TICKER}/data.parquet`: the derived whole-history object (history.py)."""
    return f"history/v1/{normalize_ticker(ticker)}/data.parquet"


def partition_of(key: str, prefix: str) -> tuple[int, int] | None:
    """(year, month-or-quarter) of a partition key under `prefix`, None for foreign keys."""
    parts = key[len(prefix) :].split("/")
    if len(parts) != 3 or parts[2] != "data.parquet" or not parts[0].isdigit():
        return None
    sub = parts[1].removeprefix("Q")
    return (int(parts[0]), int(sub)) if sub.isdigit() else None


def months_between(start: date, end: date) -> list[tuple[int, int]]:
    """Every (year, month) from start's month to end's month, inclusive."""
    out = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out
