"""The valuation kind: the multiple vs the stock's own 10-year history (month-end points,
IQR cleaning, a hysteresis regime)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def regime_step(
    state: ValuationRegime, percentile: float, params: ValuationParams
) -> ValuationRegime:
    """One step of the hysteresis state machine (UNKNOWN: the first point)."""
    if state is ValuationRegime.UNKNOWN or state is ValuationRegime.NORMAL:
        if percentile <= params.cheap_percentile:
            return ValuationRegime.CHEAP
        if percentile >= params.expensive_percentile:
            return ValuationRegime.EXPENSIVE
        return ValuationRegime.NORMAL
    if state is ValuationRegime.CHEAP:
        if percentile >= params.expensive_percentile:
            return ValuationRegime.EXPENSIVE
        if percentile > params.cheap_exit_percentile:
            return ValuationRegime.NORMAL
        return state
    if percentile <= params.cheap_percentile:
        return ValuationRegime.CHEAP
    if percentile < params.expensive_exit_percentile:
        return ValuationRegime.NORMAL
    return state


def regime_path(percentiles: Sequence[float], params: ValuationParams) -> ValuationRegime:
    """The hysteresis state machine over percentiles in date order; returns the final state."""
    state = ValuationRegime.UNKNOWN
    for p in percentiles:
        state = regime_step(state, p, params)
    return state


_SETTLED = (ValuationRegime.CHEAP, ValuationRegime.NORMAL, ValuationRegime.EXPENSIVE)


def _regime(
    percentile: Callable[[int], float], earlier: int, today: float, params: ValuationParams
) -> ValuationRegime:
    """regime_path over `earlier` points then today's, reading only the last few points.

    Walking back from the latest earlier point, the first one that sends every state to the
    same next state fixes the machine from there on, whatever came before (with none, the
    very first point starts it); the machine then runs forward from it. Most points do, so a
    day reads a handful of percentiles instead of all ~120.
    """
    start, state = 0, ValuationRegime.UNKNOWN
    for j in range(earlier - 1, -1, -1):
        p = percentile(j)
        cheap, normal, expensive = (regime_step(s, p, params) for s in _SETTLED)
        if cheap is normal is expensive:
            start, state = j + 1, normal
            break
    for j in range(start, earlier):
        state = regime_step(state, percentile(j), params)
    return regime_step(state, today, params)


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


def _multiple(point: _Point, metric: str) -> float | None:
    denominator = point.ebitda if metric == EV_EBITDA else point.sales
    if point.ev is None or denominator is None or point.ev <= 0 or denominator <= 0:
        return None
    return point.ev / denominator


class ValuationDays:
    """The valuation of any day of a series; the earlier months' points are computed once.

    A day's month-end points are the last trading days of the earlier months inside its 10
    years, plus the day itself. Those months' values, and their sorted order, are the same
    for every day of a month; only the day's own point is new. So a pass over every day of
    10 years costs little more than 2,500 single points, not 2,500 × 120.
    """

    def __init__(
        self,
        dates: Sequence[date],
        closes: Sequence[float],
        timeline: QuarterTimeline,
        params: ValuationParams,
    ) -> None:
        self._dates = dates
        self._closes = closes
        self._timeline = timeline
        self._params = params
        # Month j's last trading day (index), and the month of each day.
        month_last: list[int] = []
        self._month_of: list[int] = []
        for i, day in enumerate(dates):
            if i and (day.year, day.month) != (dates[i - 1].year, dates[i - 1].month):
                month_last.append(i - 1)
            self._month_of.append(len(month_last))
        if dates:
            month_last.append(len(dates) - 1)
        self._month_last_dates = [dates[i] for i in month_last]
        points = [_point(timeline, dates[i], closes[i]) for i in month_last]
        positive = [0]
        for p in points:
            positive.append(positive[-1] + (p.ebitda is not None and p.ebitda > 0))
        self._positive = positive
        self._values = {m: [_multiple(p, m) for p in points] for m in (EV_EBITDA, EV_SALES)}
        self._cached_key: tuple[int, int, str] | None = None
        self._cached: tuple[list[float], list[int], list[float]] = ([], [], [])

    def on(self, i: int, as_of: date | None = None) -> ValuationResult:
        """The valuation as of `as_of` (default: day i), i being the last trading day <= it."""
        params = self._params
        day = self._dates[i]
        cutoff = years_before(as_of or day, params.history_years)
        if day <= cutoff:
            return ValuationResult(ValuationRegime.UNKNOWN)
        month = self._month_of[i]
        low = bisect.bisect_right(self._month_last_dates, cutoff, 0, month)
        today = _point(self._timeline, day, self._closes[i])
        count = month - low + 1
        today_positive = today.ebitda is not None and today.ebitda > 0
        positive = self._positive[month] - self._positive[low] + today_positive
        share = positive / count
        # EV/EBITDA when TTM EBITDA > 0 on the day and on enough points; else EV/Sales.
        if today_positive and positive >= params.ebitda_positive_share * count:
            metric = EV_EBITDA
        elif today.sales is not None and today.sales > 0:
            metric = EV_SALES
        else:
            return ValuationResult(
                ValuationRegime.UNKNOWN, points=count, ebitda_positive_share=share
            )
        earlier, ranks, earlier_sorted = self._earlier(low, month, metric)
        current = _multiple(today, metric)
        ordered = earlier_sorted
        if current is not None:
            ordered = earlier_sorted.copy()
            bisect.insort(ordered, current)
        first, end = _fences(ordered, params.iqr_k)
        size = end - first
        median = quantile(ordered[first:end], 0.5) if size else None
        regime, percentile = ValuationRegime.UNKNOWN, None
        if current is not None and size >= params.min_history:

            def percentile_of_earlier(j: int) -> float:
                # percentile_of(earlier[j], cleaned history): its rank among the earlier
                # values, one more when today's value sorts at or before it, less those
                # under the lower fence.
                below = ranks[j] + (current <= earlier[j]) - first
                return 100.0 * min(max(below, 0), size) / size

            rank = min(max(bisect.bisect_right(ordered, current) - first, 0), size)
            percentile = 100.0 * rank / size
            regime = _regime(percentile_of_earlier, len(earlier), percentile, params)
        return ValuationResult(
            regime,
            metric=metric,
            multiple=current,
            percentile=percentile,
            history_size=size,
            points=count,
            outliers_removed=len(ordered) - size,
            median_multiple=median,
            ebitda_positive_share=share,
        )

    def _earlier(
        self, low: int, month: int, metric: str
    ) -> tuple[list[float], list[int], list[float]]:
        """Months low..month-1 that have a value: values in date order, ranks, sorted."""
        key = (low, month, metric)
        if key != self._cached_key:
            values = [v for v in self._values[metric][low:month] if v is not None]
            ordered = sorted(values)
            ranks = [bisect.bisect_right(ordered, v) for v in values]
            self._cached_key, self._cached = key, (values, ranks, ordered)
        return self._cached


def _fences(ordered: list[float], k: float) -> tuple[int, int]:
    """The slice of sorted values inside [Q1 − k·IQR, Q3 + k·IQR] (as remove_outliers)."""
    if not ordered:
        return 0, 0
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    spread = q3 - q1
    low, high = q1 - k * spread, q3 + k * spread
    return bisect.bisect_left(ordered, low), bisect.bisect_right(ordered, high)


def evaluate_valuation(
    dates: Sequence[date],
    closes: Sequence[float],
    timeline: QuarterTimeline,
    as_of: date,
    params: ValuationParams,
) -> ValuationResult:
    """The valuation regime on `as_of` from split-adjusted closes and quarters."""
    last = bisect.bisect_right(dates, as_of) - 1
    if last < 0:
        return ValuationResult(ValuationRegime.UNKNOWN)
    return ValuationDays(dates, closes, timeline, params).on(last, as_of)


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
    """The regime on each of `days`, earlier months' points carried from day to day."""
    valuations = ValuationDays(history.dates, history.closes, history.timeline, params)
    for day in days:
        yield _reading(valuations.on(day))


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
