"""A stock's signal history: the state changes the rules make over a window of trading days."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.market.alert_text import TYPE_FIELDS, Previous, explain
from services.market.signal import EntitySeries, Signal
from services.market.signal_days import signals_over
from services.market.states import UNKNOWN, AlertType, EvaluationParams

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class HistoryChange:
    """One state change on `as_of` (vs the trading day before) and whether it would alert."""

    as_of: date
    alert_type: AlertType
    previous_state: str
    new_state: str
    alerting: bool
    snapshot: dict[str, Any]


@dataclass(frozen=True)
class HistoryResult:
    """Changes over the trading days evaluated, and alerting changes per kind and year."""

    first_day: date | None
    last_day: date | None
    trading_days: int
    changes: list[HistoryChange] = field(default_factory=list)
    alerts: dict[AlertType, int] = field(default_factory=dict)

    @property
    def years(self) -> float:
        """The span of the days evaluated, in years (first to last day, both counted)."""
        if self.first_day is None or self.last_day is None:
            return 0.0
        return ((self.last_day - self.first_day).days + 1) / DAYS_PER_YEAR

    def alerts_per_year(self, alert_type: AlertType) -> float:
        """Alerting changes of one kind per year of the span (0 over an empty span)."""
        years = self.years
        return self.alerts.get(alert_type, 0) / years if years else 0.0


def signal_history(
    ticker: str, series: EntitySeries, start: date, end: date, params: EvaluationParams
) -> HistoryResult:
    """Evaluate every trading day in [start, end] as the daily evaluation would, and compare.

    Each day is compared with the trading day before it (for the first day of the window,
    the day before the window); the stock's very first day has nothing to compare with, as
    a stock's first evaluation sets its states silently.
    """
    begin = bisect.bisect_left(series.dates, start)
    baseline = series.dates[begin - 1] if begin > 0 else start
    signals = signals_over(series, baseline, end, params)
    evaluated = signals[1:] if begin > 0 else signals
    alerts = dict.fromkeys(TYPE_FIELDS, 0)
    changes: list[HistoryChange] = []
    for before, now in zip(signals, signals[1:], strict=False):
        for alert_type, name in TYPE_FIELDS.items():
            old, new = str(getattr(before, name)), str(getattr(now, name))
            if old == new:
                continue
            alerting = UNKNOWN not in (old, new)
            alerts[alert_type] += alerting
            changes.append(
                HistoryChange(
                    as_of=now.as_of,
                    alert_type=alert_type,
                    previous_state=old,
                    new_state=new,
                    alerting=alerting,
                    snapshot=_snapshot(ticker, alert_type, old, new, now, before, alerting),
                )
            )
    return HistoryResult(
        first_day=evaluated[0].as_of if evaluated else None,
        last_day=evaluated[-1].as_of if evaluated else None,
        trading_days=len(evaluated),
        changes=changes,
        alerts=alerts,
    )


def _snapshot(
    ticker: str,
    alert_type: AlertType,
    old: str,
    new: str,
    now: Signal,
    before: Signal,
    alerting: bool,
) -> dict[str, Any]:
    previous = Previous(
        as_of=before.as_of,
        close=before.close,
        sma200=before.sma200,
        trend_position=str(before.trend_position),
        valuation_metric=before.valuation_metric,
        valuation_multiple=before.valuation_multiple,
        valuation_percentile=before.valuation_percentile,
        valuation_regime=str(before.valuation_regime),
        eps_ttm=before.eps_ttm,
        fundamental_direction=str(before.fundamental_direction),
    )
    if alerting:
        return explain(ticker, alert_type, old, new, now, previous).snapshot
    return {}
