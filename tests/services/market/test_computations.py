"""Evaluation computations on constructed series; expected answers are worked out by hand here."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.market.quarters import QuarterTimeline
from services.market.records import QuarterFundamentals, Split
from services.market.series import sma_series, years_before
from services.market.signals.fundamentals import FundamentalDirection, fundamental_direction
from services.market.signals.trend import TrendPosition, evaluate_trend
from services.market.signals.valuation import ValuationParams as EvaluationParams
from services.market.signals.valuation import (
    ValuationRegime,
    month_end_points,
    percentile_of,
    quantile,
    regime_path,
    remove_outliers,
)
from services.market.splits import adjust_closes, adjust_quarters, applicable_splits
from tests.fixtures.evaluation import weekdays

PARAMS = EvaluationParams()


def test_sma_is_mean_of_trailing_window() -> None:
    assert sma_series([1.0, 2.0, 3.0, 4.0, 5.0], 3) == [None, None, 2.0, 3.0, 4.0]


def test_clean_cross_switches_once_on_the_third_confirming_close() -> None:
    days = weekdays(date(2020, 1, 1), 260)
    # 250 flat closes: SMA 100, close 100 >= SMA, so the machine starts ABOVE on day 199.
    # Then 10 closes at 90: SMA(250 + j) = 100 - 0.05 (j + 1) ~ 99.9, and 90 < 0.98 * SMA,
    # so days 250, 251, 252 are the 1st-3rd confirming closes: BELOW from day 252.
    closes = [100.0] * 250 + [90.0] * 10
    result = evaluate_trend(days, closes, band=0.02, confirm_days=3)
    assert result.position is TrendPosition.BELOW_200DMA
    assert result.since == days[252]
    assert result.sma200 == pytest.approx(100 - 0.05 * 10)
    two_days_in = evaluate_trend(days[:252], closes[:252], band=0.02, confirm_days=3)
    assert two_days_in.position is TrendPosition.ABOVE_200DMA


def test_whipsaw_inside_the_band_or_short_streaks_never_switches() -> None:
    days = weekdays(date(2020, 1, 1), 400)
    # Alternating 101.5 / 98.5 crosses the ~100 SMA every day but never leaves the 2% band;
    # then two closes at 97 (below 0.98 * SMA ~ 97.99) and one at 101, repeated: streaks of 2.
    wiggle = [101.5, 98.5] * 50
    short_streaks = [97.0, 97.0, 101.0] * 16
    closes = [100.0] * 252 + wiggle + short_streaks
    raw_crossings = sum(
        1 for a, b in zip(closes[250:], closes[251:], strict=False) if (a - 100) * (b - 100) < 0
    )
    assert raw_crossings > 100
    result = evaluate_trend(days, closes, band=0.02, confirm_days=3)
    assert result.position is TrendPosition.ABOVE_200DMA
    assert result.since == days[199]


def test_fewer_than_200_days_is_unknown() -> None:
    days = weekdays(date(2020, 1, 1), 199)
    result = evaluate_trend(days, [10.0] * 199, band=0.02, confirm_days=3)
    assert result.position is TrendPosition.UNKNOWN
    assert result.sma200 is None and result.close == 10.0


def test_windowed_trend_waits_for_a_full_streak() -> None:
    days = weekdays(date(2020, 1, 1), 205)
    flat = evaluate_trend(days, [100.0] * 205, band=0.02, confirm_days=3, history_starts_here=False)
    assert not flat.determined
    closes = [100.0] * 200 + [110.0] * 5
    fixed = evaluate_trend(days, closes, band=0.02, confirm_days=3, history_starts_here=False)
    assert fixed.determined and fixed.position is TrendPosition.ABOVE_200DMA


def test_four_for_one_split_gives_continuous_closes_and_scaled_per_share_figures() -> None:
    days = [date(2024, 6, 6), date(2024, 6, 7), date(2024, 6, 10), date(2024, 6, 11)]
    raw = [400.0, 404.0, 101.5, 102.0]
    split = Split(date(2024, 6, 10), to_factor=4.0, for_factor=1.0)
    splits = applicable_splits([split], date(2024, 6, 11))
    assert adjust_closes(days, raw, splits) == [100.0, 101.0, 101.5, 102.0]
    # A split after the as-of date is not applied yet.
    assert applicable_splits([split], date(2024, 6, 7)) == []
    before = QuarterFundamentals(date(2024, 3, 31), diluted_eps=2.0, shares_outstanding=1e9)
    after = QuarterFundamentals(date(2024, 6, 30), diluted_eps=0.5, shares_outstanding=4e9)
    adjusted = adjust_quarters([before, after], splits)
    assert adjusted[0].diluted_eps == 0.5 and adjusted[0].shares_outstanding == 4e9
    assert adjusted[1] == after


def test_invalid_splits_are_ignored() -> None:
    bad = [Split(date(2024, 1, 2), 0.0, 1.0), Split(date(2024, 1, 3), 2.0, 2.0)]
    assert applicable_splits(bad, date(2024, 6, 1)) == []


def _quarter(end: date, eps: float = 1.0, **kw: float) -> QuarterFundamentals:
    return QuarterFundamentals(end, diluted_eps=eps, **kw)


def test_quarter_inside_its_45_day_lag_is_not_used() -> None:
    ends = [date(2023, 6, 30), date(2023, 9, 30), date(2023, 12, 31), date(2024, 3, 31)]
    timeline = QuarterTimeline([_quarter(e, eps=i + 1.0) for i, e in enumerate(ends)], 45)
    # 2024-03-31 + 45 days = 2024-05-15.
    assert timeline.usable_count(date(2024, 5, 14)) == 3
    assert timeline.ttm_eps(date(2024, 5, 14)) is None  # only 3 usable: no TTM
    assert timeline.usable_count(date(2024, 5, 15)) == 4
    assert timeline.ttm_eps(date(2024, 5, 15)) == 1.0 + 2.0 + 3.0 + 4.0


def _quarter_ends(first_year: int, count: int) -> list[date]:
    ends = [date(1, 3, 31), date(1, 6, 30), date(1, 9, 30), date(1, 12, 31)]
    return [ends[i % 4].replace(year=first_year + i // 4) for i in range(count)]


def test_direction_needs_eight_quarters_then_uses_the_band() -> None:
    ends = _quarter_ends(2020, 10)
    day = ends[-1] + timedelta(days=45)
    seven = QuarterTimeline([_quarter(e) for e in ends[:7]], 45)
    assert fundamental_direction(seven, day, 0.02).direction is FundamentalDirection.UNKNOWN
    # EPS 1,1,1,1 then 1.1 x4: 8th quarter TTM 4.4 vs 4.0 (+0.4 >= 0) starts IMPROVING.
    # 9th at 1.1: TTM 4.4 vs 4.1 (+0.3 > band 0.082) -> IMPROVING. 10th at 0.93: TTM 4.23
    # vs 4.2 (+0.03, inside band 0.084) -> keeps IMPROVING.
    eps = [1.0] * 4 + [1.1] * 5 + [0.93]
    timeline = QuarterTimeline([_quarter(e, x) for e, x in zip(ends, eps, strict=True)], 45)
    result = fundamental_direction(timeline, day, 0.02)
    assert result.direction is FundamentalDirection.IMPROVING
    assert result.eps_ttm == pytest.approx(4.23)
    assert result.eps_ttm_year_ago == pytest.approx(4.2)
    # Falling: 8th quarter TTM 3.6 vs 4.0 (-0.4 < 0) starts DETERIORATING.
    eps_down = [1.0] * 4 + [0.9] * 4 + [0.99, 0.9]
    down = QuarterTimeline([_quarter(e, x) for e, x in zip(ends, eps_down, strict=True)], 45)
    # Quarter 9: TTM 3.69 vs 3.9 -> -0.21 < -0.078 -> DETERIORATING; quarter 10: 3.69 vs 3.8
    # -> -0.11 < -0.076 -> DETERIORATING.
    assert fundamental_direction(down, day, 0.02).direction is FundamentalDirection.DETERIORATING
    inside = [1.0] * 4 + [0.9] * 4 + [1.0, 1.0, 1.0, 1.0]
    ends12 = _quarter_ends(2020, 12)
    keep = QuarterTimeline([_quarter(e, x) for e, x in zip(ends12, inside, strict=True)], 45)
    # 9th: 3.7 vs 3.9 down; 10th: 3.8 vs 3.8 = 0 inside band -> keep DETERIORATING;
    # 11th: 3.9 vs 3.7 +0.2 > 0.074 -> IMPROVING; 12th: 4.0 vs 3.6 -> IMPROVING.
    end_day = ends12[-1] + timedelta(days=45)
    assert fundamental_direction(keep, end_day, 0.02).direction is FundamentalDirection.IMPROVING
    tenth_day = ends12[9] + timedelta(days=45)
    assert (
        fundamental_direction(keep, tenth_day, 0.02).direction is FundamentalDirection.DETERIORATING
    )


def test_quantile_matches_numpy_linear_interpolation() -> None:
    # numpy.percentile([1, 2, 3, 4], 25) == 1.75 and 75 -> 3.25; median of 5 values = middle.
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.75) == 3.25
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([7.0], 0.25) == 7.0


def test_iqr_removes_outliers_beyond_three_iqr() -> None:
    # 1..10 and 100: Q1 = 3.5, Q3 = 8.5 (positions 2.5 and 7.5), IQR 5, fences -11.5 and 23.5.
    values = [float(v) for v in range(1, 11)] + [100.0]
    assert remove_outliers(values, 3.0) == [float(v) for v in range(1, 11)]
    # 23.5 itself is inside the fence (inclusive).
    assert 23.5 in remove_outliers([*range(1, 11), 23.5], 3.0)


def test_percentile_counts_values_at_or_below() -> None:
    history = [1.0, 2.0, 2.0, 3.0]
    assert percentile_of(2.0, history) == 75.0
    assert percentile_of(0.5, history) == 0.0
    assert percentile_of(3.0, history) == 100.0


def test_regime_hysteresis() -> None:
    seq = [50.0, 20.0, 25.0, 30.0, 31.0, 79.0, 80.0, 71.0, 70.0, 69.0]
    expected = [
        ValuationRegime.NORMAL,
        ValuationRegime.CHEAP,  # <= 20
        ValuationRegime.CHEAP,  # 25 is not above 30
        ValuationRegime.CHEAP,  # 30 is not above 30
        ValuationRegime.NORMAL,  # 31 > 30
        ValuationRegime.NORMAL,
        ValuationRegime.EXPENSIVE,  # >= 80
        ValuationRegime.EXPENSIVE,
        ValuationRegime.EXPENSIVE,  # 70 is not below 70
        ValuationRegime.NORMAL,  # 69 < 70
    ]
    for n, want in enumerate(expected, start=1):
        assert regime_path(seq[:n], PARAMS) is want
    assert regime_path([10.0, 85.0], PARAMS) is ValuationRegime.EXPENSIVE  # CHEAP -> EXPENSIVE
    assert regime_path([90.0, 15.0], PARAMS) is ValuationRegime.CHEAP
    assert regime_path([85.0], PARAMS) is ValuationRegime.EXPENSIVE


def test_month_end_points_cover_ten_years_ending_at_the_as_of_day() -> None:
    days = [
        date(2014, 6, 13),  # = D - 10 years: excluded
        date(2014, 6, 16),
        date(2014, 6, 30),  # June 2014 point
        date(2014, 7, 31),
        date(2024, 5, 31),
        date(2024, 6, 3),
        date(2024, 6, 13),  # D
        date(2024, 6, 14),  # after D: excluded
    ]
    points = month_end_points(days, date(2024, 6, 13), 10)
    assert [days[i] for i in points] == [
        date(2014, 6, 30),
        date(2014, 7, 31),
        date(2024, 5, 31),
        date(2024, 6, 13),
    ]


def day_by_day_month_ends(dates: list[date], as_of: date, years: int) -> list[int]:
    """The definition read literally: every day in the window, the month's last one kept."""
    cutoff = years_before(as_of, years)
    last: dict[tuple[int, int], int] = {}
    for i, day in enumerate(dates):
        if cutoff < day <= as_of:
            last[(day.year, day.month)] = i
    return [last[month] for month in sorted(last)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.dates(date(2008, 1, 1), date(2026, 12, 31)), max_size=400, unique=True),
    st.dates(date(2007, 1, 1), date(2027, 12, 31)),
    st.integers(1, 12),
)
def test_month_end_points_match_the_day_by_day_definition(
    days: list[date], as_of: date, years: int
) -> None:
    days.sort()
    assert month_end_points(days, as_of, years) == day_by_day_month_ends(days, as_of, years)
    assert years_before(date(2024, 2, 29), 10) == date(2014, 2, 28)
