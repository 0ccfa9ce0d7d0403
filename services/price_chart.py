"""A ticker's daily bars for a chart: the window rules, split adjustment and the 200-day SMA."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.errors import BadUserInput
from services.market.series import sma_series
from services.market.splits import applicable_splits, price_factor
from services.storage.history import read_history
from services.storage.market_files import PriceSeries, read_prices, read_splits
from services.storage.object_store import ObjectStore

DEFAULT_WINDOW_DAYS = 365
MAX_WINDOW_YEARS = 10
SMA_WINDOW = 200
# 199 trading days reach back ~290 calendar days; the margin covers holiday-heavy stretches.
SMA_LOOKBACK_DAYS = 320
# No market data is older; earlier dates would also overflow the window arithmetic (year 1).
EARLIEST_DATE = date(1900, 1, 1)


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One trading day on the basis of the window's last day, with the SMA200 where defined."""

    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float
    sma200: float | None


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def price_window(
    start: date | None, end: date | None, today: date | None = None
) -> tuple[date, date]:
    """[start, end] with defaults (last 365 days); BadUserInput: reversed, > 10 years, < 1900."""
    if any(day is not None and day < EARLIEST_DATE for day in (start, end)):
        raise BadUserInput(f"price dates start at {EARLIEST_DATE.isoformat()}")
    if end is None:
        end = today or datetime.now(UTC).date()
    if start is None:
        start = end - timedelta(days=DEFAULT_WINDOW_DAYS)
    if start > end:
        raise BadUserInput(f"from ({start}) must not be after to ({end})")
    if start < _years_before(end, MAX_WINDOW_YEARS):
        raise BadUserInput(f"a price window spans at most {MAX_WINDOW_YEARS} years")
    return start, end


async def daily_bars(
    store: ObjectStore, ticker: str, start: date, end: date, *, use_history: bool = True
) -> list[DailyBar]:
    """Daily bars of `ticker` in [start, end] with SMA200 where defined; [] without data.

    Bars are split-adjusted to the basis of `end` (the evaluation's rule, docs/signals.md), so
    the chart and its SMA match Signal.close/sma200 and show no split cliffs; without splits
    they are the stored values. The SMA needs the 199 trading days before `start`, read from
    earlier months. One GET of the history object when `use_history` and it exists, else
    the month objects.
    """
    history = await read_history(store, ticker, quarter_columns=()) if use_history else None

    async def prices(since: date | None) -> PriceSeries:
        if history is not None:
            return history.price_series(since, end)
        return await read_prices(store, ticker, since, end)

    lookback = start - timedelta(days=SMA_LOOKBACK_DAYS)
    series = await prices(lookback)
    first = bisect_left(series.dates, start)
    oldest = series.first_date
    if first < SMA_WINDOW - 1 and oldest is not None and oldest < lookback + timedelta(days=10):
        # Data reaches the lookback's edge yet is too sparse (long halts): read all before.
        series = await prices(None)
        first = bisect_left(series.dates, start)
    if first >= len(series):
        return []
    stored = history.split_records() if history is not None else await read_splits(store, ticker)
    splits = applicable_splits(stored, end)
    factors = [price_factor(splits, day) for day in series.dates] if splits else None
    closes = _scaled(series.closes, factors)
    sma = sma_series(closes, SMA_WINDOW)
    opens, highs, lows = (_scaled(c, factors) for c in (series.opens, series.highs, series.lows))
    volumes = series.volumes
    return [
        DailyBar(
            date=series.dates[i],
            open=opens[i],
            high=highs[i],
            low=lows[i],
            close=closes[i],
            volume=float(volumes[i] / factors[i] if factors else volumes[i]),
            sma200=sma[i],
        )
        for i in range(first, len(series))
    ]


def _scaled(values: list[float], factors: list[float] | None) -> list[float]:
    if factors is None:
        return values
    return [v * f for v, f in zip(values, factors, strict=True)]
