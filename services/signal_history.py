"""Stock.signalHistory's reads: the window rules and the stock's history object, evaluated."""

from __future__ import annotations

import asyncio
from datetime import date

from services.errors import BadUserInput
from services.market.evaluation import EntitySeries
from services.market.records import Dividend
from services.market.series import years_before
from services.market.signal_history import HistoryResult, signal_history
from services.market.signals import dividend
from services.market.signals.registry import EvaluationParams
from services.storage.history import TickerHistory, build_history, read_history
from services.storage.object_store import ObjectStore

MAX_WINDOW_YEARS = 15
DEFAULT_WINDOW_YEARS = 10
EARLIEST_DATE = date(1900, 1, 1)


def history_window(start: date | None, end: date | None, latest: date) -> tuple[date, date]:
    """[start, end] with defaults (10 years up to `latest`); BadUserInput past 15 years."""
    if any(day is not None and day < EARLIEST_DATE for day in (start, end)):
        raise BadUserInput(f"dates start at {EARLIEST_DATE.isoformat()}")
    end = latest if end is None else end
    start = years_before(end, DEFAULT_WINDOW_YEARS) if start is None else start
    if start > end:
        raise BadUserInput(f"from ({start}) must not be after to ({end})")
    if start < years_before(end, MAX_WINDOW_YEARS):
        raise BadUserInput(f"a signal history spans at most {MAX_WINDOW_YEARS} years")
    return start, end


async def stock_signal_history(
    store: ObjectStore,
    ticker: str,
    start: date,
    end: date,
    params: EvaluationParams,
    *,
    use_history: bool = True,
) -> HistoryResult:
    """Every trading day of [start, end] evaluated from the ticker's history object.

    The object is the one the daily evaluator reads (one GET); without it, the partitions.
    """
    history = await read_history(store, ticker) if use_history else None
    if history is None:
        history = await build_history(store, ticker)
    return await asyncio.to_thread(_evaluate, history, start, end, params)


def _evaluate(
    history: TickerHistory, start: date, end: date, params: EvaluationParams
) -> HistoryResult:
    prices = history.price_series(None, end)
    series = EntitySeries(
        dates=prices.dates,
        closes=prices.closes,
        quarters=history.quarter_records(None, end),
        splits=history.split_records(),
        # The evaluator's own extra input (ingest/evaluation/loading.py): every stored dividend;
        # None when never fetched, which the dividend kind reads as UNKNOWN.
        extra={dividend.NAME: _until(history.dividend_records(), end)},
    )
    return signal_history(history.ticker, series, start, end, params)


def _until(dividends: list[Dividend] | None, end: date) -> list[Dividend] | None:
    return None if dividends is None else [d for d in dividends if d.ex_date <= end]
