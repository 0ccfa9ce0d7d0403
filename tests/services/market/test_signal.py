"""compute_signal on whole constructed series; expected numbers derived by hand in each test."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from services.market.evaluation import EntitySeries, NeedsFullHistory, compute_signal
from services.market.records import Split
from services.market.signals.fundamentals import FundamentalDirection
from services.market.signals.registry import EvaluationParams
from services.market.signals.trend import TrendPosition
from services.market.signals.valuation import ValuationRegime
from tests.fixtures.evaluation import (
    D0,
    D1,
    D2,
    D3,
    before_split,
    scenario_multiple,
    scenario_series,
    steady_quarters,
    weekdays_between,
)

PARAMS = EvaluationParams()


def hand_percentile(as_of: date) -> tuple[float, int]:
    """Percentile of as_of's month among the months with weekdays in (as_of − 10y, as_of]."""
    cutoff = as_of.replace(year=as_of.year - 10)
    months = sorted({(d.year, d.month) for d in weekdays_between(cutoff, as_of) if d > cutoff})
    values = [scenario_multiple(y, m) for y, m in months]
    return 100.0 * sum(1 for v in values if v <= values[-1]) / len(values), len(values)


def test_valuation_falls_into_cheap_stays_at_25th_and_leaves_at_35th() -> None:
    p0, n0 = hand_percentile(D0)
    p1, _ = hand_percentile(D1)
    p2, _ = hand_percentile(D2)
    p3, n3 = hand_percentile(D3)
    # The construction does what the scenario says (10 years of months = 120 or 121 points).
    assert 40 < p0 < 60 and p1 <= 20 and 20 < p2 <= 30 and 30 < p3 < 70
    assert n0 in (120, 121) and n3 in (120, 121)
    dates, closes, quarters = scenario_series()
    series = EntitySeries(dates, closes, quarters)
    expected = {
        D0: (p0, ValuationRegime.NORMAL),
        D1: (p1, ValuationRegime.CHEAP),
        D2: (p2, ValuationRegime.CHEAP),  # 25th: not above 30, hysteresis keeps CHEAP
        D3: (p3, ValuationRegime.NORMAL),
    }
    for day, (percentile, regime) in expected.items():
        signal = compute_signal(series, day, PARAMS)
        assert signal.valuation_metric == "EV/EBITDA"
        assert signal.valuation_percentile == pytest.approx(percentile)
        assert signal.valuation_regime is regime, day
        month_value = scenario_multiple(day.year, day.month)
        assert signal.valuation_multiple == pytest.approx(month_value)
        assert signal.close == pytest.approx(4 * month_value)
    # Flat EPS: TTM 4.0 vs 4.0, change 0 >= 0 starts IMPROVING and nothing moves it.
    assert compute_signal(series, D3, PARAMS).fundamental_direction is (
        FundamentalDirection.IMPROVING
    )
    assert compute_signal(series, D3, PARAMS).eps_ttm == pytest.approx(4.0)


def test_mostly_negative_ebitda_falls_back_to_ev_sales() -> None:
    dates, closes, quarters = scenario_series()
    # EBITDA negative until 2019: TTM EBITDA > 0 at well under 75% of the points since 2014.
    mixed = [
        dataclasses.replace(q, ebitda=-1e8) if q.period_end_date.year < 2019 else q
        for q in quarters
    ]
    signal = compute_signal(EntitySeries(dates, closes, mixed), D3, PARAMS)
    assert signal.valuation_metric == "EV/SALES"
    # EV = 4 × 13.35 × 1e9, TTM sales = 4 × 2e9.
    assert signal.valuation_multiple == pytest.approx(4 * 13.35 * 1e9 / 8e9)
    assert signal.details["ebitda_positive_share"] < 0.75


def test_no_positive_sales_or_ebitda_is_unknown() -> None:
    dates, closes, quarters = scenario_series()
    broke = [dataclasses.replace(q, ebitda=-1.0, sales=0.0) for q in quarters]
    signal = compute_signal(EntitySeries(dates, closes, broke), D3, PARAMS)
    assert signal.valuation_regime is ValuationRegime.UNKNOWN
    assert signal.valuation_metric is None


def test_short_history_is_unknown_but_still_reports_the_multiple() -> None:
    dates, closes, quarters = scenario_series()
    # May 2021 .. March 2024 = 35 month-end points of a smooth 11.2 -> 14.6 ramp (no outliers).
    start = dates.index(date(2021, 5, 3))
    signal = compute_signal(EntitySeries(dates[start:], closes[start:], quarters), D0, PARAMS)
    assert signal.details["valuation_history_size"] == 35
    assert signal.valuation_regime is ValuationRegime.UNKNOWN
    assert signal.valuation_percentile is None
    assert signal.valuation_multiple == pytest.approx(14.6)
    one_more = dates.index(date(2021, 4, 1))
    longer = compute_signal(EntitySeries(dates[one_more:], closes[one_more:], quarters), D0, PARAMS)
    assert longer.details["valuation_history_size"] == 36
    # 14.6 is the largest of the 36 values: percentile 100 -> EXPENSIVE.
    assert longer.valuation_percentile == 100.0
    assert longer.valuation_regime is ValuationRegime.EXPENSIVE


def test_no_value_on_the_as_of_day_is_unknown() -> None:
    dates, closes, quarters = scenario_series()
    no_shares = [
        dataclasses.replace(q, shares_outstanding=None) if q.period_end_date.year == 2024 else q
        for q in quarters
    ]
    # The Q1 2024 quarter (usable from 2024-05-15) has no share count: EV undefined on D3.
    signal = compute_signal(EntitySeries(dates, closes, no_shares), D3, PARAMS)
    assert signal.valuation_multiple is None
    assert signal.valuation_regime is ValuationRegime.UNKNOWN


def test_outlier_month_is_dropped_from_the_history() -> None:
    dates, closes, quarters = scenario_series()
    spiked = [
        c * 100 if (d.year, d.month) == (2020, 1) else c for d, c in zip(dates, closes, strict=True)
    ]
    base = compute_signal(EntitySeries(dates, closes, quarters), D3, PARAMS)
    signal = compute_signal(EntitySeries(dates, spiked, quarters), D3, PARAMS)
    assert signal.details["valuation_outliers_removed"] == 1
    assert signal.details["valuation_history_size"] == base.details["valuation_history_size"] - 1
    # Without the January 2020 value: count of values <= 13.35 over the remaining n.
    p3, n3 = hand_percentile(D3)
    jan_2020 = scenario_multiple(2020, 1)
    below = round(p3 * n3 / 100) - (1 if jan_2020 <= 13.35 else 0)
    assert signal.valuation_percentile == pytest.approx(100.0 * below / (n3 - 1))


def test_quarter_inside_its_lag_does_not_count_yet() -> None:
    dates, closes, quarters = scenario_series()
    # Q1 2024 (ends 2024-03-31) with EPS 2.0 becomes usable on 2024-05-15.
    bumped = [
        dataclasses.replace(q, diluted_eps=2.0) if q.period_end_date == date(2024, 3, 31) else q
        for q in quarters
    ]
    series = EntitySeries(dates, closes, bumped)
    assert compute_signal(series, date(2024, 5, 14), PARAMS).eps_ttm == pytest.approx(4.0)
    assert compute_signal(series, date(2024, 5, 15), PARAMS).eps_ttm == pytest.approx(5.0)


def test_four_for_one_split_changes_no_state_and_no_adjusted_number() -> None:
    dates, closes, quarters = scenario_series()
    ex_date = date(2024, 5, 20)
    raw_closes, raw_quarters = before_split(dates, closes, quarters, ex_date, 4.0)
    split = Split(ex_date, to_factor=4.0, for_factor=1.0)
    raw = EntitySeries(dates, raw_closes, raw_quarters, [split])
    adjusted = EntitySeries(dates, closes, quarters)
    for day in (date(2024, 5, 17), ex_date, date(2024, 5, 21), D3):
        a, b = compute_signal(raw, day, PARAMS), compute_signal(adjusted, day, PARAMS)
        assert (a.trend_position, a.valuation_regime, a.fundamental_direction) == (
            b.trend_position,
            b.valuation_regime,
            b.fundamental_direction,
        )
        # Before the ex-date the as-of basis is still the old share: per-share numbers 4x.
        factor = 4.0 if day < ex_date else 1.0
        assert a.close is not None and b.close is not None
        assert b.sma200 is not None and b.eps_ttm is not None
        assert a.close == pytest.approx(b.close * factor)
        assert a.sma200 == pytest.approx(b.sma200 * factor)
        assert a.eps_ttm == pytest.approx(b.eps_ttm * factor)
        assert a.valuation_multiple == pytest.approx(b.valuation_multiple)
        assert a.valuation_percentile == pytest.approx(b.valuation_percentile)
    # Before the ex-date the raw basis is still the old one: close of the day is 4x.
    before = compute_signal(raw, date(2024, 5, 17), PARAMS)
    assert before.close == pytest.approx(4 * 4 * 12.35)


def test_windowed_prices_need_the_full_history_only_without_a_confirming_streak() -> None:
    dates = weekdays_between(date(2020, 1, 1), date(2021, 6, 30))
    flat = EntitySeries(dates, [50.0] * len(dates), complete=False)
    with pytest.raises(NeedsFullHistory):
        compute_signal(flat, dates[-1], PARAMS)
    signal = compute_signal(dataclasses.replace(flat, complete=True), dates[-1], PARAMS)
    assert signal.trend_position is TrendPosition.ABOVE_200DMA


def test_same_data_same_signal() -> None:
    dates, closes, quarters = scenario_series()
    series = EntitySeries(dates, closes, quarters)
    assert compute_signal(series, D2, PARAMS) == compute_signal(series, D2, PARAMS)


def test_no_prices_is_all_unknown() -> None:
    signal = compute_signal(EntitySeries([], [], steady_quarters(date(2020, 1, 1), D0)), D0, PARAMS)
    assert signal.trend_position is TrendPosition.UNKNOWN
    assert signal.valuation_regime is ValuationRegime.UNKNOWN
