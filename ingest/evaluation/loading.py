"""Read one ticker's series from the Parquet store: only the partitions the as-of date needs."""

from __future__ import annotations

from datetime import date, timedelta

from ingest.evaluation.signals import EntitySeries
from ingest.evaluation.valuation import years_before
from ingest.object_store import ObjectStore
from ingest.parquet_layout import read_fundamentals, read_prices, read_splits

# 200 trading days of SMA warm-up before the first month-end point is ~290 calendar days;
# the margin lets the windowed trend machine meet a confirming streak early (see trend.py).
PRICE_WARMUP_DAYS = 400


def price_window_start(as_of: date, years: int) -> date:
    """First day read for prices: the valuation window plus the SMA warm-up."""
    return years_before(as_of, years) - timedelta(days=PRICE_WARMUP_DAYS)


async def load_series(
    store: ObjectStore,
    ticker: str,
    as_of: date,
    *,
    years: int,
    first_price_date: date | None,
    full_history: bool = False,
) -> EntitySeries:
    """Prices from the window start (or all, when asked), every quarter and split up to as_of.

    Fundamentals are read whole (up to as_of): the EPS direction is a state machine over
    every usable quarter. `complete` tells the trend machine whether the prices start at the
    ticker's first trading day.
    """
    start = None if full_history else price_window_start(as_of, years)
    complete = start is None or (first_price_date is not None and first_price_date >= start)
    prices = await read_prices(store, ticker, start, as_of, columns=("date", "close"))
    quarters = await read_fundamentals(store, ticker, None, as_of)
    splits = await read_splits(store, ticker)
    return EntitySeries(
        dates=prices.dates,
        closes=prices.closes,
        quarters=quarters,
        splits=[s for s in splits if s.ex_date <= as_of],
        complete=complete,
    )
