"""The signal history's incremental pass against the daily evaluation, on the demo's stocks."""

from __future__ import annotations

import functools
from datetime import date, timedelta

import pytest

from ingest.demo.csv_files import END, build_series
from ingest.demo.stocks import BASELINE, DEMO_STOCKS, REPLAY_DATES
from services.market.evaluation import EntitySeries, compute_signal
from services.market.records import QuarterFundamentals, Split
from services.market.signal_history import HistoryChange, signal_history
from services.market.signals.kind import UNKNOWN
from services.market.signals.registry import KINDS, EvaluationParams
from services.market.signals.valuation import ValuationParams

PARAMS = EvaluationParams()


@functools.cache
def demo_series(root: str) -> EntitySeries:
    """A demo stock's generated data as the evaluator reads it (raw closes, quarters, split)."""
    stock = next(s for s in DEMO_STOCKS if s.root == root)
    series = build_series(stock)
    debt, cash = stock.debt_and_cash()
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
    return EntitySeries(series.days, series.closes, quarters, splits)


def daily_states(series: EntitySeries, day: date) -> dict[str, str]:
    signal = compute_signal(series, day, PARAMS)
    return {kind.name: str(signal.state(kind)) for kind in KINDS}


@pytest.mark.parametrize("root", [s.root for s in DEMO_STOCKS])
def test_last_day_of_a_history_equals_the_daily_evaluation_for_every_demo_stock(
    root: str,
) -> None:
    series = demo_series(root)
    for end in (BASELINE, *REPLAY_DATES, END):
        history = signal_history(root, series, end - timedelta(days=3650), end, PARAMS)
        if history.last_day is None:
            continue
        assert history.last_day == max(d for d in series.dates if d <= end)
        assert history.final_states == daily_states(series, history.last_day), (root, end)


@pytest.mark.parametrize("root", ["SPLT", "BRKW", "QNTX"])
def test_every_day_of_a_history_equals_that_days_own_daily_evaluation(root: str) -> None:
    # SPLT splits 4-for-1 on 2025-05-12: the history works on the window end's share basis,
    # each daily evaluation on its own day's; the states must not differ.
    series = demo_series(root)
    start, end = date(2024, 7, 1), END
    history = signal_history(root, series, date(2015, 1, 1), end, PARAMS)
    states = {kind.name: daily_states(series, start)[kind.name] for kind in KINDS}
    by_day: dict[date, list[HistoryChange]] = {}
    for change in history.changes:
        by_day.setdefault(change.as_of, []).append(change)
    for change in (c for c in history.changes if c.as_of <= start):
        states[change.kind.name] = change.new_state  # the states replayed up to `start`
    for day in (d for d in series.dates if start < d <= end):
        for change in by_day.get(day, []):
            assert states[change.kind.name] == change.previous_state
            states[change.kind.name] = change.new_state
        assert states == daily_states(series, day), (root, day)


def test_a_split_never_makes_a_transition() -> None:
    series = demo_series("SPLT")
    history = signal_history("SPLT", series, date(2025, 4, 1), END, PARAMS)
    assert history.trading_days > 60 and history.changes == []


def test_alerting_follows_each_kinds_rule_and_is_counted_per_year() -> None:
    history = signal_history("ORBT", demo_series("ORBT"), date(2015, 6, 30), END, PARAMS)
    assert 9.9 < history.years < 10.1
    for change in history.changes:
        assert change.alerting == change.kind.alerts(change.previous_state, change.new_state)
        assert change.alerting == (UNKNOWN not in (change.previous_state, change.new_state))
        assert (change.headline is not None) == change.alerting
    for kind in KINDS:
        alerting = sum(c.alerting for c in history.changes if c.kind is kind)
        assert history.alerts[kind.name] == alerting
        assert history.alerts_per_year(kind) == pytest.approx(alerting / history.years)


def test_the_first_day_of_a_window_compares_with_the_trading_day_before_it() -> None:
    series = demo_series("ORBT")
    history = signal_history("ORBT", series, date(2015, 1, 1), END, PARAMS)
    change = next(c for c in history.changes if c.kind.name == "trend" and c.alerting)
    inside = signal_history("ORBT", series, change.as_of, END, PARAMS)
    assert inside.first_day == change.as_of
    assert inside.changes[0].as_of == change.as_of
    assert inside.changes[0].new_state == change.new_state
    # The stock's own first day has nothing before it: its states are set silently.
    assert all(c.as_of > series.dates[0] for c in history.changes)


def test_valuation_parameters_reach_the_incremental_pass() -> None:
    series = demo_series("HVNT")
    strict = EvaluationParams(
        kinds={**PARAMS.kinds, "valuation": ValuationParams(min_history=10_000)}
    )
    history = signal_history("HVNT", series, date(2020, 1, 1), END, strict)
    assert history.final_states["valuation"] == UNKNOWN
    assert not any(c.kind.name == "valuation" for c in history.changes)
