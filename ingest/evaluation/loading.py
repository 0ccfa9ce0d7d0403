"""Read one ticker's series: its history object (one GET), else the partitions D needs.

The same windows are cut from either source, so both give the same series.
Window (exact by construction, see `EntitySeries.complete`):
- prices: the trading days in (D − 10 years, D] — the month-end points need no more, and the
  200-day SMA warms up inside that window; the trend machine then starts "undetermined" and
  is fixed by the first full confirmation streak (years before D in practice);
- fundamentals: quarters ending from 10 years + 430 days before D (the four quarters behind
  the first month-end point's TTM), only the columns §8 uses; the EPS direction is fixed by
  the first comparison outside its band;
- dividends: every stored one up to D (a small object; the rule looks back three years);
- whenever a window leaves a state undetermined, everything up to D is read instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from services.market.evaluation import EntitySeries
from services.market.records import Dividend, QuarterFundamentals, Split
from services.market.series import years_before
from services.market.signals import dividend
from services.storage.history import TickerHistory, read_history
from services.storage.keys import fundamentals_key
from services.storage.market_files import PriceSeries, read_dividends, read_prices, read_splits
from services.storage.object_store import ObjectStore
from services.storage.parquet import FUNDAMENTALS_SCHEMA, decode_table

QUARTER_LOOKBACK_DAYS = 430
PRICE_COLUMNS = ("date", "close")
QUARTER_COLUMNS = (
    "period_end_date",
    "sales",
    "ebitda",
    "diluted_eps",
    "shares_outstanding",
    "cash",
    "total_debt",
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class DataRange:
    """First stored price / period-end dates from `entities` (None when unknown)."""

    first_price: date | None = None
    first_quarter: date | None = None


def price_window_start(as_of: date, years: int) -> date:
    """First day read for prices: the day after as_of − years."""
    return years_before(as_of, years) + timedelta(days=1)


def quarter_window_start(as_of: date, years: int) -> date:
    """First period end read for fundamentals."""
    return years_before(as_of, years) - timedelta(days=QUARTER_LOOKBACK_DAYS)


def _window_starts(as_of: date, years: int, full_history: bool) -> tuple[date | None, date | None]:
    """(prices, quarters) read from; None reads from the first stored day."""
    if full_history:
        return None, None
    return price_window_start(as_of, years), quarter_window_start(as_of, years)


async def load_series(
    store: ObjectStore,
    ticker: str,
    as_of: date,
    *,
    years: int,
    known: DataRange = DataRange(),
    full_history: bool = False,
) -> EntitySeries:
    """Prices, quarters and splits of `ticker` up to `as_of` from the partition objects."""
    price_start, quarter_start = _window_starts(as_of, years, full_history)
    prices = await read_prices(store, ticker, price_start, as_of, columns=PRICE_COLUMNS)
    quarters = await read_quarters(store, ticker, quarter_start, as_of)
    splits = await read_splits(store, ticker)
    dividends = await read_dividends(store, ticker)
    return _series(prices, quarters, splits, dividends, as_of, price_start, quarter_start, known)


def series_from_history(
    history: TickerHistory,
    as_of: date,
    *,
    years: int,
    known: DataRange = DataRange(),
    full_history: bool = False,
) -> EntitySeries:
    """What `load_series` reads, cut from the ticker's history object (no further reads)."""
    price_start, quarter_start = _window_starts(as_of, years, full_history)
    prices = history.price_series(price_start, as_of)
    quarters = history.quarter_records(quarter_start, as_of)
    splits = history.split_records()
    dividends = history.dividend_records()
    return _series(prices, quarters, splits, dividends, as_of, price_start, quarter_start, known)


async def read_history_for_evaluation(store: ObjectStore, ticker: str) -> TickerHistory | None:
    """The history object with only the columns the evaluation uses (None: read partitions)."""
    return await read_history(
        store, ticker, price_columns=PRICE_COLUMNS, quarter_columns=QUARTER_COLUMNS
    )


def _series(
    prices: PriceSeries,
    quarters: list[QuarterFundamentals],
    splits: list[Split],
    dividends: list[Dividend] | None,
    as_of: date,
    price_start: date | None,
    quarter_start: date | None,
    known: DataRange,
) -> EntitySeries:
    return EntitySeries(
        dates=_dates(prices.day_numbers),
        closes=prices.closes,
        quarters=quarters,
        splits=[s for s in splits if s.ex_date <= as_of],
        complete=_covers(price_start, known.first_price),
        quarters_complete=_covers(quarter_start, known.first_quarter),
        # Every stored dividend (a small object); None: never fetched, the kind says UNKNOWN.
        extra={dividend.NAME: _until(dividends, as_of)},
    )


def _until(dividends: list[Dividend] | None, as_of: date) -> list[Dividend] | None:
    return None if dividends is None else [d for d in dividends if d.ex_date <= as_of]


def _covers(start: date | None, first: date | None) -> bool:
    return start is None or (first is not None and first >= start)


def _dates(day_numbers: Sequence[int]) -> list[date]:
    # ~5x faster than pyarrow's date32 to_pylist for a few thousand days.
    from_ordinal = date.fromordinal
    return [from_ordinal(_EPOCH_ORDINAL + n) for n in day_numbers]


async def read_quarters(
    store: ObjectStore, ticker: str, start: date | None, end: date
) -> list[QuarterFundamentals]:
    """Quarters with start <= period end <= end, reading only the §8 columns."""
    prefix = f"fundamentals/v1/{ticker}/"
    if start is None or store.prefers_listing:
        keys = [k for k in await store.list(prefix) if _in_range(k, prefix, start, end)]
    else:
        keys = [fundamentals_key(ticker, day) for day in _quarter_days(start, end)]
    blobs = await store.get_many(keys)
    return await asyncio.to_thread(_decode_quarters, blobs, start, end)


def _in_range(key: str, prefix: str, start: date | None, end: date) -> bool:
    parts = key[len(prefix) :].split("/")
    if len(parts) != 3 or parts[2] != "data.parquet" or not parts[0].isdigit():
        return False
    quarter = parts[1].removeprefix("Q")
    if not quarter.isdigit():
        return False
    part = (int(parts[0]), int(quarter))
    low = (start.year, (start.month - 1) // 3 + 1) if start else (0, 0)
    return low <= part <= (end.year, (end.month - 1) // 3 + 1)


def _quarter_days(start: date, end: date) -> list[date]:
    """One day in each calendar quarter from start's to end's."""
    out = []
    year, quarter = start.year, (start.month - 1) // 3
    while (year, quarter) <= (end.year, (end.month - 1) // 3):
        out.append(date(year, 3 * quarter + 1, 1))
        year, quarter = (year + 1, 0) if quarter == 3 else (year, quarter + 1)
    return out


def _decode_quarters(
    blobs: dict[str, bytes | None], start: date | None, end: date
) -> list[QuarterFundamentals]:
    quarters = []
    for key in sorted(blobs):
        data = blobs[key]
        if not data:
            continue
        table = decode_table(key, data, FUNDAMENTALS_SCHEMA, QUARTER_COLUMNS)
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        for row in zip(*columns, strict=True):
            if (start is None or row[0] >= start) and row[0] <= end:
                quarters.append(QuarterFundamentals(**dict(zip(QUARTER_COLUMNS, row, strict=True))))
    return quarters
