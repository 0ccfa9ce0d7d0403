"""Every trading day's signal over a span of days in one pass (the daily evaluation's rules).

The daily evaluation is this pass over a span of one day. Over many days the work is
carried from day to day instead of redone: the trend machine runs once over the closes, the
valuation's month-end points of earlier months are computed once and kept sorted, and the
EPS direction is worked out once per number of usable quarters.

Everything is brought to the share basis of the span's last day. A day's states do not
depend on the basis: splits after it scale all of its closes, the SMA, per-share EPS and
(inversely) share counts alike, and every rule compares ratios of those (close vs SMA,
EV = close × shares, EPS now vs a year ago), so a day inside a long span gets the states its
own daily evaluation finds (tests/services/market/test_signal_days.py checks it day by day
on data with a split).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.market.fundamentals import DirectionResult, QuarterTimeline, fundamental_direction
from services.market.signal import EntitySeries, NeedsFullHistory, Signal
from services.market.splits import adjust_closes, adjust_quarters, applicable_splits
from services.market.states import EvaluationParams, TrendPosition, ValuationRegime
from services.market.trend import TrendResult
from services.market.valuation import (
    EV_EBITDA,
    EV_SALES,
    ValuationResult,
    quantile,
    years_before,
)


def signals_over(
    series: EntitySeries, start: date, end: date, params: EvaluationParams
) -> list[Signal]:
    """The Signal of every trading day in [start, end], on the basis of `end`'s shares."""
    last = bisect.bisect_right(series.dates, end)
    first = bisect.bisect_left(series.dates, start, 0, last)
    if first >= last:
        return []
    dates = series.dates[:last]
    splits = applicable_splits(series.splits, end)
    closes = adjust_closes(dates, series.closes[:last], splits)
    timeline = QuarterTimeline(
        adjust_quarters(series.quarters, splits), params.availability_lag_days
    )
    trends = trend_days(
        dates,
        closes,
        first,
        band=params.trend_band,
        confirm_days=params.trend_confirm_days,
        window=params.sma_window,
        history_starts_here=series.complete,
    )
    valuations = ValuationDays(dates, closes, timeline, params)
    directions: dict[int, DirectionResult] = {}
    applied = [
        {"ex_date": s.ex_date.isoformat(), "to": s.to_factor, "for": s.for_factor} for s in splits
    ]
    out: list[Signal] = []
    for offset, i in enumerate(range(first, last)):
        day = dates[i]
        trend = trends[offset]
        if not trend.determined:
            raise NeedsFullHistory(day)
        count = timeline.usable_count(day)
        direction = directions.get(count)
        if direction is None:
            direction = fundamental_direction(
                timeline,
                day,
                params.direction_band,
                history_starts_here=series.quarters_complete,
            )
            directions[count] = direction
        if not direction.determined:
            raise NeedsFullHistory(day)
        valuation = valuations.on(i)
        out.append(_signal(day, trend, valuation, direction, timeline, params, applied))
    return out


def _signal(
    day: date,
    trend: TrendResult,
    valuation: ValuationResult,
    direction: DirectionResult,
    timeline: QuarterTimeline,
    params: EvaluationParams,
    applied: list[dict[str, Any]],
) -> Signal:
    details: dict[str, Any] = {
        "price_date": day.isoformat(),
        "trend_since": _iso(trend.since),
        "sma_gap_pct": _gap_pct(trend.close, trend.sma200),
        "trend_band": params.trend_band,
        "trend_confirm_days": params.trend_confirm_days,
        "valuation_points": valuation.points,
        "valuation_history_size": valuation.history_size,
        "valuation_outliers_removed": valuation.outliers_removed,
        "valuation_median_multiple": valuation.median_multiple,
        "ebitda_positive_share": valuation.ebitda_positive_share,
        "eps_ttm_year_ago": direction.eps_ttm_year_ago,
        "usable_quarters": direction.quarters_used,
        "latest_quarter_end": _iso(direction.latest_period_end),
        "ttm_sales": timeline.ttm_sales(day),
        "ttm_ebitda": timeline.ttm_ebitda(day),
        "splits_applied": applied,
    }
    return Signal(
        as_of=day,
        price_date=day,
        close=trend.close,
        sma200=trend.sma200,
        trend_position=trend.position,
        valuation_metric=valuation.metric,
        valuation_multiple=valuation.multiple,
        valuation_percentile=valuation.percentile,
        valuation_regime=valuation.regime,
        eps_ttm=direction.eps_ttm,
        fundamental_direction=direction.direction,
        details=details,
    )


# --- trend ------------------------------------------------------------------------------


def trend_days(
    dates: Sequence[date],
    closes: Sequence[float],
    first: int,
    *,
    band: float,
    confirm_days: int,
    window: int = 200,
    history_starts_here: bool = True,
) -> list[TrendResult]:
    """The trend of each day from index `first` on: one run of the machine, SMA rolled along.

    The machine is the one of docs/signals.md; with `history_starts_here=False` its start
    state is unknown until a full confirmation streak fixes it (every start agrees from there).
    """
    out: list[TrendResult] = []
    state: TrendPosition | None = None
    since: date | None = None
    up = down = 0
    upper_factor, lower_factor = 1.0 + band, 1.0 - band
    total = 0.0
    unknown = TrendPosition.UNKNOWN
    for i, close in enumerate(closes):
        if i < window:
            total += close
            if i < window - 1:
                if i >= first:
                    out.append(TrendResult(unknown, close, None, None))
                continue
        else:
            total += close - closes[i - window]
        average = total / window
        if i == window - 1:
            if history_starts_here:
                state = (
                    TrendPosition.ABOVE_200DMA if close >= average else TrendPosition.BELOW_200DMA
                )
                since = dates[i]
            else:
                up, down = _streaks(close, average, upper_factor, lower_factor, 0, 0)
                state, since, up, down = _step(state, since, dates[i], up, down, confirm_days)
        else:
            up, down = _streaks(close, average, upper_factor, lower_factor, up, down)
            state, since, up, down = _step(state, since, dates[i], up, down, confirm_days)
        if i >= first:
            if state is None:
                out.append(TrendResult(unknown, close, average, None, determined=False))
            else:
                out.append(TrendResult(state, close, average, since))
    return out


def _streaks(
    close: float, average: float, upper: float, lower: float, up: int, down: int
) -> tuple[int, int]:
    return (
        up + 1 if close > average * upper else 0,
        down + 1 if close < average * lower else 0,
    )


def _step(
    state: TrendPosition | None, since: date | None, day: date, up: int, down: int, confirm: int
) -> tuple[TrendPosition | None, date | None, int, int]:
    if state is not TrendPosition.ABOVE_200DMA and up >= confirm:
        return TrendPosition.ABOVE_200DMA, day if state is not None else None, 0, 0
    if state is not TrendPosition.BELOW_200DMA and down >= confirm:
        return TrendPosition.BELOW_200DMA, day if state is not None else None, 0, 0
    return state, since, up, down


# --- valuation --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    ev: float | None
    ebitda: float | None
    sales: float | None


class ValuationDays:
    """The valuation of any day of the series; earlier months' points are computed once.

    A day's month-end points are the last trading days of the earlier months inside its 10
    years, plus the day itself. Those months' values, and their sorted order, stay the same
    for every day of a month; only the day's own point is new.
    """

    def __init__(
        self,
        dates: Sequence[date],
        closes: Sequence[float],
        timeline: QuarterTimeline,
        params: EvaluationParams,
    ) -> None:
        self._dates = dates
        self._closes = closes
        self._timeline = timeline
        self._params = params
        # Month j: its last trading day's index; _month_of[i]: the month of day i.
        self._month_last: list[int] = []
        self._month_of: list[int] = []
        for i, day in enumerate(dates):
            if i and (day.year, day.month) != (dates[i - 1].year, dates[i - 1].month):
                self._month_last.append(i - 1)
            self._month_of.append(len(self._month_last))
        if dates:
            self._month_last.append(len(dates) - 1)
        self._month_last_dates = [dates[i] for i in self._month_last]
        self._points = [self._point(i) for i in self._month_last]
        positive = [0]
        for p in self._points:
            positive.append(positive[-1] + (p.ebitda is not None and p.ebitda > 0))
        self._positive = positive
        self._values = {m: [_multiple(p, m) for p in self._points] for m in (EV_EBITDA, EV_SALES)}
        self._cached_key: tuple[int, int, str] | None = None
        self._cached: tuple[list[float], list[int], list[float]] = ([], [], [])

    def _point(self, i: int) -> _Point:
        day = self._dates[i]
        timeline = self._timeline
        latest = timeline.latest(day)
        if latest is None or latest.shares_outstanding is None:
            ev = None
        else:
            # Debt components are summed with nulls as 0; a missing cash figure counts as 0.
            ev = (
                self._closes[i] * latest.shares_outstanding
                + (latest.total_debt or 0.0)
                - (latest.cash or 0.0)
            )
        return _Point(ev, timeline.ttm_ebitda(day), timeline.ttm_sales(day))

    def on(self, i: int) -> ValuationResult:
        """The valuation regime on day i (docs/signals.md, Valuation)."""
        params = self._params
        day = self._dates[i]
        month = self._month_of[i]
        low = bisect.bisect_right(
            self._month_last_dates, years_before(day, params.history_years), 0, month
        )
        today = self._point(i)
        count = month - low + 1
        today_positive = today.ebitda is not None and today.ebitda > 0
        positive = self._positive[month] - self._positive[low] + today_positive
        share = positive / count
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
        if current is None:
            ordered = earlier_sorted
        else:
            ordered = earlier_sorted.copy()
            bisect.insort(ordered, current)
        first, end = _fences(ordered, params.iqr_k)
        size = end - first
        history = ordered[first:end]
        median = quantile(history, 0.5) if history else None
        if current is None or size < params.min_history:
            return ValuationResult(
                ValuationRegime.UNKNOWN,
                metric=metric,
                multiple=current,
                history_size=size,
                points=count,
                outliers_removed=len(ordered) - size,
                median_multiple=median,
                ebitda_positive_share=share,
            )

        def percentile(j: int) -> float:
            # Earlier point j against the history: its rank among the earlier values, +1 when
            # today's value sorts before it, less the values cut below the lower fence.
            below = ranks[j] + (current <= earlier[j]) - first
            return 100.0 * min(max(below, 0), size) / size

        today_percentile = 100.0 * min(max(bisect.bisect_right(ordered, current) - first, 0), size)
        today_percentile /= size
        return ValuationResult(
            _regime(percentile, len(earlier), today_percentile, params),
            metric=metric,
            multiple=current,
            percentile=today_percentile,
            history_size=size,
            points=count,
            outliers_removed=len(ordered) - size,
            median_multiple=median,
            ebitda_positive_share=share,
        )

    def _earlier(
        self, low: int, month: int, metric: str
    ) -> tuple[list[float], list[int], list[float]]:
        """Months low..month-1 that have a value: values in date order, their ranks, sorted."""
        key = (low, month, metric)
        if key != self._cached_key:
            values = [v for v in self._values[metric][low:month] if v is not None]
            ordered = sorted(values)
            ranks = [bisect.bisect_right(ordered, v) for v in values]
            self._cached_key, self._cached = key, (values, ranks, ordered)
        return self._cached


def _multiple(point: _Point, metric: str) -> float | None:
    denominator = point.ebitda if metric == EV_EBITDA else point.sales
    if point.ev is None or denominator is None or point.ev <= 0 or denominator <= 0:
        return None
    return point.ev / denominator


def _fences(ordered: list[float], k: float) -> tuple[int, int]:
    """The slice of sorted values inside [Q1 − k·IQR, Q3 + k·IQR] (the outlier rule)."""
    if not ordered:
        return 0, 0
    q1, q3 = quantile(ordered, 0.25), quantile(ordered, 0.75)
    spread = q3 - q1
    low, high = q1 - k * spread, q3 + k * spread
    return bisect.bisect_left(ordered, low), bisect.bisect_right(ordered, high)


_SETTLED = (ValuationRegime.CHEAP, ValuationRegime.NORMAL, ValuationRegime.EXPENSIVE)


def regime_step(
    state: ValuationRegime, percentile: float, params: EvaluationParams
) -> ValuationRegime:
    """One step of the valuation regime's hysteresis machine (docs/signals.md)."""
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


def _regime(
    percentile: Callable[[int], float], earlier: int, today: float, params: EvaluationParams
) -> ValuationRegime:
    """The machine's state after the earlier points then today's, reading few of them.

    Walking back from the latest earlier point, the first one that sends every state to the
    same next state (or the very first point, which starts the machine) fixes the state from
    there on, whatever came before; the machine then runs forward from it. Most points do, so
    a day reads a handful of percentiles instead of all ~120.
    """
    start = 0
    state = ValuationRegime.UNKNOWN
    for j in range(earlier - 1, -1, -1):
        p = percentile(j)
        nexts = {regime_step(s, p, params) for s in _SETTLED}
        if len(nexts) == 1:
            start, state = j + 1, nexts.pop()
            break
    else:
        if earlier:
            start, state = 1, regime_step(ValuationRegime.UNKNOWN, percentile(0), params)
    for j in range(start, earlier):
        state = regime_step(state, percentile(j), params)
    return regime_step(state, today, params)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _gap_pct(close: float | None, sma: float | None) -> float | None:
    if close is None or sma is None or sma == 0:
        return None
    return 100.0 * (close - sma) / sma
