"""A stock's signal history: the state changes the rules make over a window of trading days.

Every trading day is evaluated by the daily evaluation's own code, each kind's incremental
pass (`evaluate_days` of services/market/signals), and compared with the day before by each
kind's transition rule, so a kind added to the registry appears here with no further change.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.market.evaluation import EntitySeries, evaluate_days
from services.market.explanation import explain
from services.market.signals.kind import Evaluation, Previous, SignalKind
from services.market.signals.registry import KINDS, EvaluationParams

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class HistoryChange:
    """One state change on `as_of` (vs the trading day before) and whether it would alert."""

    as_of: date
    kind: SignalKind
    previous_state: str
    new_state: str
    alerting: bool
    # An alerting change's headline and snapshot, as an alert written that day would have.
    headline: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryResult:
    """Changes over the trading days evaluated, the last day's states and alerts per kind."""

    first_day: date | None
    last_day: date | None
    trading_days: int
    changes: list[HistoryChange] = field(default_factory=list)
    # Kind name -> its state on the last day evaluated.
    final_states: dict[str, str] = field(default_factory=dict)
    # Kind name -> how many changes would have alerted.
    alerts: dict[str, int] = field(default_factory=dict)

    @property
    def years(self) -> float:
        """The span of the days evaluated, in years (first to last day, both counted)."""
        if self.first_day is None or self.last_day is None:
            return 0.0
        return ((self.last_day - self.first_day).days + 1) / DAYS_PER_YEAR

    def alerts_per_year(self, kind: SignalKind) -> float:
        """Alerting changes of one kind per year of the span (0 over an empty span)."""
        years = self.years
        return self.alerts.get(kind.name, 0) / years if years else 0.0


def signal_history(
    ticker: str, series: EntitySeries, start: date, end: date, params: EvaluationParams
) -> HistoryResult:
    """Evaluate every trading day in [start, end] as the daily evaluation would, and compare.

    Each day is compared with the trading day before it (for the window's first day, the
    last one before the window); the stock's very first day has nothing to compare with, as a
    stock's first evaluation sets its states silently. Numbers are on `end`'s share basis.
    """
    first = bisect.bisect_left(series.dates, start)
    last = bisect.bisect_right(series.dates, end)
    days = list(series.dates[max(first - 1, 0) : last])
    evaluations = list(evaluate_days(series, days, params)) if first < last else []
    evaluated = evaluations[1:] if first > 0 else evaluations
    alerts = {kind.name: 0 for kind in KINDS}
    changes: list[HistoryChange] = []
    for before, now in zip(evaluations, evaluations[1:], strict=False):
        previous: Previous | None = None
        for kind in KINDS:
            old, new = str(before.state(kind)), str(now.state(kind))
            if old == new:
                continue
            alerting = kind.alerts(old, new)
            change = HistoryChange(now.as_of, kind, old, new, alerting)
            if alerting:
                alerts[kind.name] += 1
                previous = previous or previous_of(before)
                text = explain(ticker, kind, old, new, now, previous)
                change = HistoryChange(
                    now.as_of, kind, old, new, alerting, text.headline, text.snapshot
                )
            changes.append(change)
    final = evaluated[-1] if evaluated else None
    return HistoryResult(
        first_day=evaluated[0].as_of if evaluated else None,
        last_day=final.as_of if final else None,
        trading_days=len(evaluated),
        changes=changes,
        final_states={k.name: str(final.state(k)) for k in KINDS} if final else {},
        alerts=alerts,
    )


def previous_of(evaluation: Evaluation) -> Previous:
    """An evaluation as the previous signal of the next day (same share basis)."""
    values: dict[str, Any] = {}
    for reading in evaluation.readings.values():
        values.update(reading.values)
    states = {kind.name: str(evaluation.state(kind)) for kind in KINDS}
    return Previous(as_of=evaluation.as_of, states=states, values=values)
