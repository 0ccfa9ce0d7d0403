"""The valuation kind: the multiple vs the stock's own 10-year history (month-end points,
IQR cleaning, a hysteresis regime)."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from services.market.quarters import QuarterTimeline
from services.market.series import years_before
from services.market.signals.kind import (
    DetailField,
    Direction,
    Evaluation,
    History,
    Previous,
    Reading,
    SignalKind,
    known_change,
    setting,
)
from services.market.text import multiple as fmt_multiple
from services.market.text import ordinal, verb

EV_EBITDA = "EV/EBITDA"
EV_SALES = "EV/SALES"
METRIC_NAMES = {EV_EBITDA: "EV/EBITDA", EV_SALES: "EV/Sales"}
REGIME_WORDS = {
    "CHEAP": "its historically cheap zone",
    "EXPENSIVE": "its historically expensive zone",
    "NORMAL": "its usual valuation range",
}


class ValuationRegime(StrEnum):
    CHEAP = "CHEAP"
    NORMAL = "NORMAL"
    EXPENSIVE = "EXPENSIVE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ValuationParams:
    """The valuation rule's numbers (docs/signals.md)."""

    cheap_percentile: float = setting(20.0, "VALUATION_CHEAP_PERCENTILE")
    cheap_exit_percentile: float = setting(30.0, "VALUATION_CHEAP_EXIT_PERCENTILE")
    expensive_percentile: float = setting(80.0, "VALUATION_EXPENSIVE_PERCENTILE")
    expensive_exit_percentile: float = setting(70.0, "VALUATION_EXPENSIVE_EXIT_PERCENTILE")
    min_history: int = setting(36, "VALUATION_MIN_HISTORY", minimum=1)
    iqr_k: float = setting(3.0, "VALUATION_IQR_K")
    ebitda_positive_share: float = setting(0.75, "VALUATION_EBITDA_POSITIVE_SHARE")
    history_years: int = 10

    def problem(self) -> str | None:
        """Why these numbers cannot work together, or None."""
        if not (
            self.cheap_percentile
            <= self.cheap_exit_percentile
            <= self.expensive_exit_percentile
            <= self.expensive_percentile
            <= 100
        ):
            return (
                "VALUATION_CHEAP_PERCENTILE <= VALUATION_CHEAP_EXIT_PERCENTILE <= "
                "VALUATION_EXPENSIVE_EXIT_PERCENTILE <= VALUATION_EXPENSIVE_PERCENTILE <= 100 "
                "must hold"
            )
        if self.ebitda_positive_share > 1:
            return "VALUATION_EBITDA_POSITIVE_SHARE must be <= 1"
        return None


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


def regime_path(percentiles: Sequence[float], params: ValuationParams) -> ValuationRegime:
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
    params: ValuationParams,
) -> ValuationResult:
    """The valuation regime on `as_of` from split-adjusted closes and quarters."""
    indices = month_end_points(dates, as_of, params.history_years)
    return _evaluate_points(indices, dates, closes, timeline, params, {})


def _evaluate_points(
    indices: Sequence[int],
    dates: Sequence[date],
    closes: Sequence[float],
    timeline: QuarterTimeline,
    params: ValuationParams,
    known: dict[int, _Point],
) -> ValuationResult:
    """The regime over the month-end points `indices` (the last one is the as-of day).

    `known`: each day's EV, EBITDA and sales by index, kept across the days of a pass (a
    month-end point is the same on every later day that uses it).
    """
    if not indices:
        return ValuationResult(ValuationRegime.UNKNOWN)
    points = []
    for i in indices:
        point = known.get(i)
        if point is None:
            point = known[i] = _point(timeline, dates[i], closes[i])
        points.append(point)
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


def _reading(result: ValuationResult) -> Reading:
    return Reading(
        state=result.regime,
        values={
            "valuation_metric": result.metric,
            "valuation_multiple": result.multiple,
            "valuation_percentile": result.percentile,
        },
        details={
            "valuation_points": result.points,
            "valuation_history_size": result.history_size,
            "valuation_outliers_removed": result.outliers_removed,
            "valuation_median_multiple": result.median_multiple,
            "ebitda_positive_share": result.ebitda_positive_share,
        },
    )


def evaluate(history: History, params: ValuationParams) -> Reading:
    """The valuation regime on the history's last day."""
    return _reading(
        evaluate_valuation(history.dates, history.closes, history.timeline, history.as_of, params)
    )


def evaluate_days(
    history: History, days: Sequence[int], params: ValuationParams
) -> Iterator[Reading]:
    """The regime on each of `days`: each day's points are its own 10-year month-ends.

    The points' numbers are computed once for the pass, and a day's points are the last
    trading days of the earlier months in its window (found once) plus the day itself, as
    month_end_points gives them; each day then ranks its own window.
    """
    dates = history.dates
    month_lasts = [
        i
        for i in range(len(dates))
        if i + 1 == len(dates) or _month(dates[i + 1]) != _month(dates[i])
    ]
    known: dict[int, _Point] = {}
    for day in days:
        as_of = dates[day]
        first = bisect.bisect_right(dates, years_before(as_of, params.history_years))
        month_start = bisect.bisect_left(dates, as_of.replace(day=1))
        earlier = month_lasts[
            bisect.bisect_left(month_lasts, first) : bisect.bisect_left(month_lasts, month_start)
        ]
        indices = [*earlier, day] if first <= day else []
        yield _reading(
            _evaluate_points(indices, dates, history.closes, history.timeline, params, known)
        )


def _month(day: date) -> tuple[int, int]:
    return day.year, day.month


def explain(
    ticker: str, old: str, new: str, now: Evaluation, prev: Previous | None
) -> tuple[str, str, str]:
    """Headline, what changed and why it matters for a valuation regime change."""
    if new in ("CHEAP", "EXPENSIVE"):
        headline = f"{ticker} entered {REGIME_WORDS[new]}"
    else:
        headline = f"{ticker} left {REGIME_WORDS[old]}"
    metric_now = now.value("valuation_metric")
    multiple_now = now.value("valuation_multiple")
    metric = METRIC_NAMES.get(metric_now or "", "Its valuation multiple")
    current = f"{fmt_multiple(multiple_now)} ({ordinal(now.value('valuation_percentile'))} "
    current += "percentile of its 10-year history)"
    before = prev.values if prev else {}
    if (
        prev
        and before.get("valuation_multiple") is not None
        and before.get("valuation_metric") == metric_now
    ):
        changed = (
            f"{metric} {verb(before['valuation_multiple'], multiple_now)} from "
            f"{fmt_multiple(before['valuation_multiple'])} "
            f"({ordinal(before.get('valuation_percentile'))} percentile on "
            f"{prev.as_of.isoformat()}) to {current}."
        )
    else:
        changed = f"{metric} is now {current}; the regime was {old.lower()} before."
    why = {
        "CHEAP": (
            f"{ticker} is now valued below most of its own past decade. Low multiples often "
            "reflect worries the market already prices in, so it is a cue to check whether the "
            "business has changed or only the price."
        ),
        "EXPENSIVE": (
            f"{ticker} is now valued above most of its own past decade. A high multiple builds "
            "more optimism into the price and leaves less room for disappointment."
        ),
    }.get(
        new,
        f"The valuation is back inside the range {ticker} has usually traded in over 10 years; "
        f"the {'discount' if old == 'CHEAP' else 'premium'} to its own history has faded.",
    )
    return headline, changed, why


def steady(state: str, now: Evaluation) -> str:
    """The regime held."""
    zone = {"CHEAP": "cheap zone", "EXPENSIVE": "expensive zone"}.get(state, "usual range")
    return (
        f"Valuation is unchanged: still in its {zone} "
        f"({ordinal(now.value('valuation_percentile'))} percentile of its 10-year history)."
    )


def facts(values: Mapping[str, Any]) -> list[str]:
    """The multiple, when there is one, for the before-vs-now section."""
    value = values.get("valuation_multiple")
    return [] if value is None else [f"multiple {fmt_multiple(value)}"]


KIND = SignalKind(
    name="valuation",
    alert_type="valuation_regime_change",
    label="Valuation regime",
    states=ValuationRegime,
    arrows={ValuationRegime.CHEAP: Direction.DOWN, ValuationRegime.EXPENSIVE: Direction.UP},
    state_field="valuation_regime",
    params_type=ValuationParams,
    per_share=(),
    evaluate=evaluate,
    evaluate_days=evaluate_days,
    alerts=known_change,
    explain=explain,
    steady=steady,
    facts=facts,
    facts_rank=2,
    snapshot_now=("valuation_metric", "valuation_multiple", "valuation_percentile"),
    snapshot_before=("valuation_multiple", "valuation_percentile"),
    detail_fields=(
        DetailField(
            "metric", str, "now", "valuation_metric", description='"EV/EBITDA" or "EV/SALES"'
        ),
        DetailField("multiple_before", float, "before", "valuation_multiple"),
        DetailField("multiple_now", float, "now", "valuation_multiple"),
        DetailField("percentile_before", float, "before", "valuation_percentile"),
        DetailField("percentile_now", float, "now", "valuation_percentile"),
        DetailField("close", float, "now", "close"),
    ),
)
