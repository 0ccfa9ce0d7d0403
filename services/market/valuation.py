"""Valuation vs the stock's own 10-year history: month-end points, IQR cleaning, regime."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.market.fundamentals import QuarterTimeline
from services.market.states import EvaluationParams, ValuationRegime

EV_EBITDA = "EV/EBITDA"
EV_SALES = "EV/SALES"


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def month_end_points(dates: Sequence[date], as_of: date, years: int) -> list[int]:
    """Per month with trading days in (as_of − years, as_of]: index of its last such day.

    `dates` are sorted: one binary search per month instead of a step per day (this ran
    once per stock per evaluation and was the hottest loop of the computation).
    """
    first = bisect.bisect_right(dates, years_before(as_of, years))
    end = bisect.bisect_right(dates, as_of)
    points: list[int] = []
    i = first
    while i < end:
        day = dates[i]
        following = (
            date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
        )
        i = bisect.bisect_left(dates, following, i, end)
        points.append(i - 1)
    return points


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """numpy's default (linear interpolation) quantile of already sorted values."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def remove_outliers(values: Sequence[float], k: float) -> list[float]:
    """Sorted values inside [Q1 − k·IQR, Q3 + k·IQR]."""
    ordered = sorted(values)
    if not ordered:
        return []
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    spread = q3 - q1
    low, high = q1 - k * spread, q3 + k * spread
    return [v for v in ordered if low <= v <= high]


def percentile_of(value: float, sorted_history: Sequence[float]) -> float:
    """100 × (number of history values <= value) / history size."""
    return 100.0 * bisect.bisect_right(sorted_history, value) / len(sorted_history)


def regime_path(percentiles: Sequence[float], params: EvaluationParams) -> ValuationRegime:
    """The hysteresis state machine over percentiles in date order; returns the final state."""
    state = ValuationRegime.UNKNOWN
    for p in percentiles:
        if state is ValuationRegime.UNKNOWN:
            if p <= params.cheap_percentile:
                state = ValuationRegime.CHEAP
            elif p >= params.expensive_percentile:
                state = ValuationRegime.EXPENSIVE
            else:
                state = ValuationRegime.NORMAL
        elif state is ValuationRegime.NORMAL:
            if p <= params.cheap_percentile:
                state = ValuationRegime.CHEAP
            elif p >= params.expensive_percentile:
                state = ValuationRegime.EXPENSIVE
        elif state is ValuationRegime.CHEAP:
            if p >= params.expensive_percentile:
                state = ValuationRegime.EXPENSIVE
            elif p > params.cheap_exit_percentile:
                state = ValuationRegime.NORMAL
        elif p <= params.cheap_percentile:
            state = ValuationRegime.CHEAP
        elif p < params.expensive_exit_percentile:
            state = ValuationRegime.NORMAL
    return state


@dataclass(frozen=True)
class ValuationResult:
    """Valuation on the as-of day plus the numbers the alert texts quote."""

    regime: ValuationRegime
    metric: str | None = None
    multiple: float | None = None
    percentile: float | None = None
    history_size: int = 0
    points: int = 0
    outliers_removed: int = 0
    median_multiple: float | None = None
    ebitda_positive_share: float | None = None


@dataclass(frozen=True)
class _Point:
    ev: float | None
    ebitda: float | None
    sales: float | None


def _point(timeline: QuarterTimeline, day: date, close: float) -> _Point:
    latest = timeline.latest(day)
    if latest is None or latest.shares_outstanding is None:
        ev = None
    else:
        # Debt components are summed with nulls as 0; a missing cash figure counts as 0.
        ev = close * latest.shares_outstanding + (latest.total_debt or 0.0) - (latest.cash or 0.0)
    return _Point(ev, timeline.ttm_ebitda(day), timeline.ttm_sales(day))


def _choose_metric(points: Sequence[_Point], share_needed: float) -> str | None:
    """EV/EBITDA if TTM EBITDA > 0 on D and at >= share_needed of points; else EV/Sales or None."""
    last = points[-1]
    positive = sum(1 for p in points if p.ebitda is not None and p.ebitda > 0)
    if last.ebitda is not None and last.ebitda > 0 and positive >= share_needed * len(points):
        return EV_EBITDA
    if last.sales is not None and last.sales > 0:
        return EV_SALES
    return None


def _multiple(point: _Point, metric: str) -> float | None:
    denominator = point.ebitda if metric == EV_EBITDA else point.sales
    if point.ev is None or denominator is None or point.ev <= 0 or denominator <= 0:
        return None
    return point.ev / denominator


def evaluate_valuation(
    dates: Sequence[date],
    closes: Sequence[float],
    timeline: QuarterTimeline,
    as_of: date,
    params: EvaluationParams,
) -> ValuationResult:
    """The valuation regime on `as_of` from split-adjusted closes and quarters."""
    indices = month_end_points(dates, as_of, params.history_years)
    if not indices:
        return ValuationResult(ValuationRegime.UNKNOWN)
    points = [_point(timeline, dates[i], closes[i]) for i in indices]
    share = sum(1 for p in points if p.ebitda is not None and p.ebitda > 0) / len(points)
    metric = _choose_metric(points, params.ebitda_positive_share)
    if metric is None:
        return ValuationResult(
            ValuationRegime.UNKNOWN, points=len(points), ebitda_positive_share=share
        )
    values = [_multiple(p, metric) for p in points]
    kept = [v for v in values if v is not None]
    history = remove_outliers(kept, params.iqr_k)
    current = values[-1]
    result = ValuationResult(
        ValuationRegime.UNKNOWN,
        metric=metric,
        multiple=current,
        history_size=len(history),
        points=len(points),
        outliers_removed=len(kept) - len(history),
        median_multiple=quantile(history, 0.5) if history else None,
        ebitda_positive_share=share,
    )
    if current is None or len(history) < params.min_history:
        return result
    # Every point with a value gets a percentile against the cleaned history (an outlier
    # itself scores 0 or 100); points without a value are skipped by the state machine.
    percentiles = [percentile_of(v, history) for v in values if v is not None]
    regime = regime_path(percentiles, params)
    return dataclasses.replace(result, regime=regime, percentile=percentiles[-1])
