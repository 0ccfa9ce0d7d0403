"""Benchmark: Stock.signalHistory's computation for one stock × 10 years vs naive per-day.

Usage: python bench/signal_history.py [--stock BRKW] [--years 10] [--rounds 5]

One demo stock (10½ years of prices, quarters back to 2012; SPLT has a split) is written to a
local object store with its history object. Then, in this one process:
- the incremental pass: stock_signal_history (one GET of the history object, decode, every
  trading day of the window evaluated by each kind's `evaluate_days`, transitions), best of
  --rounds; target <= 300 ms for 10 years;
- the naive recomputation: the daily evaluation (compute_signal) run afresh for each trading
  day of the window, as a loop over the evaluator would; run once (it takes seconds).
Prints both in ms, their ratio, and checks that both give the same states on every day.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.demo.csv_files import END, build_series
from ingest.demo.stocks import DEMO_STOCKS
from services.market.evaluation import EntitySeries, compute_signal
from services.market.records import PriceBar, QuarterFundamentals, Split
from services.market.series import years_before
from services.market.signal_history import HistoryChange, signal_history
from services.market.signals.registry import KINDS, EvaluationParams
from services.signal_history import stock_signal_history
from services.storage.history import build_history, write_history
from services.storage.local import LocalObjectStore
from services.storage.market_files import write_fundamentals, write_prices, write_splits


def demo_inputs(root: str) -> tuple[str, list[PriceBar], list[QuarterFundamentals], list[Split]]:
    stock = next(s for s in DEMO_STOCKS if s.root == root)
    series = build_series(stock)
    debt, cash = stock.debt_and_cash()
    bars = [
        PriceBar(d, c, c, c, c, stock.volume)
        for d, c in zip(series.days, series.closes, strict=True)
    ]
    quarters = [
        QuarterFundamentals(
            q.period_end,
            sales=q.sales,
            ebitda=q.ebitda,
            diluted_eps=q.eps,
            shares_outstanding=q.shares,
            cash=cash,
            total_debt=debt,
        )
        for q in series.quarters
    ]
    splits = [Split(*stock.split)] if stock.split else []
    return stock.ticker, bars, quarters, splits


async def main(root: str, years: int, rounds: int) -> None:
    ticker, bars, quarters, splits = demo_inputs(root)
    params = EvaluationParams()
    end = END
    start = years_before(end, years)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalObjectStore(Path(tmp), fsync=False)
        await write_prices(store, ticker, bars)
        await write_fundamentals(store, ticker, quarters)
        await write_splits(store, ticker, splits)
        await write_history(store, await build_history(store, ticker))
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            history = await stock_signal_history(store, ticker, start, end, params)
            timings.append(time.perf_counter() - started)
        await store.close()
    fast = min(timings)
    series = EntitySeries([b.date for b in bars], [b.close for b in bars], quarters, splits)
    days = [d for d in series.dates if start <= d <= end]
    started = time.perf_counter()
    naive = [compute_signal(series, day, params) for day in days]
    slow = time.perf_counter() - started
    # The same states on every day: replay the history's changes over the naive states.
    replay = signal_history(ticker, series, date.min, end, params)
    states = {k.name: str(naive[0].state(k)) for k in KINDS}
    changes: dict[date, list[HistoryChange]] = {}
    for change in replay.changes:
        changes.setdefault(change.as_of, []).append(change)
    for day, signal in zip(days[1:], naive[1:], strict=True):
        for change in changes.get(day, []):
            states[change.kind.name] = change.new_state
        assert states == {k.name: str(signal.state(k)) for k in KINDS}, day
    rates = ", ".join(f"{k.alert_type} {history.alerts_per_year(k):.2f}" for k in KINDS)
    print(f"{ticker}: {len(days)} trading days ({start} .. {end}), {len(history.changes)} changes")
    print(f"alerts per year: {rates}")
    print(
        f"incremental (history object read + pass): {fast * 1000:.0f} ms best of {rounds} "
        f"(median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms); target <= 300 ms"
    )
    print(f"naive per-day recomputation: {slow * 1000:.0f} ms")
    print(f"ratio naive / incremental: {slow / fast:.0f}x; states equal on every day")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", default="BRKW", help="a demo stock's root (BRKW, SPLT, ...)")
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.stock, args.years, args.rounds))
