"""One stock's evaluation for an as-of date, from raw (unadjusted) series: every kind's reading."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.market.quarters import QuarterTimeline
from services.market.records import QuarterFundamentals, Split
from services.market.signals.kind import Evaluation, History, Reading
from services.market.signals.registry import KINDS, EvaluationParams
from services.market.splits import adjust_closes, adjust_quarters, applicable_splits

STATE_FIELDS = {kind.name: kind.state_field for kind in KINDS}


class NeedsFullHistory(Exception):
    """A window was too short to fix a kind's state (trend, EPS direction); read everything."""


@dataclass(frozen=True)
class EntitySeries:
    """Raw inputs for one ticker; `complete` / `quarters_complete`: nothing earlier exists."""

    dates: Sequence[date]
    closes: Sequence[float]
    quarters: Sequence[QuarterFundamentals] = ()
    splits: Sequence[Split] = ()
    complete: bool = True
    quarters_complete: bool = True
    # Input series of kinds that need more than prices and quarters, by kind name (raw).
    extra: Mapping[str, Any] = field(default_factory=dict)


def prepare_history(series: EntitySeries, as_of: date, params: EvaluationParams) -> History:
    """The series up to as_of, split-adjusted to as_of's share basis (what every kind reads)."""
    end = bisect.bisect_right(series.dates, as_of)
    dates = series.dates[:end]
    splits = applicable_splits(series.splits, as_of)
    return History(
        as_of=as_of,
        dates=dates,
        closes=adjust_closes(dates, series.closes[:end], splits),
        timeline=QuarterTimeline(
            adjust_quarters(series.quarters, splits), params.availability_lag_days
        ),
        splits=splits,
        complete=series.complete,
        quarters_complete=series.quarters_complete,
        series=series.extra,
    )


def compute_signal(series: EntitySeries, as_of: date, params: EvaluationParams) -> Evaluation:
    """The evaluation of one stock on as_of: split adjustment, then each kind's reading."""
    history = prepare_history(series, as_of, params)
    readings: dict[str, Reading] = {}
    for kind in KINDS:
        reading = kind.evaluate(history, params.of(kind))
        if not reading.determined:
            raise NeedsFullHistory(as_of)
        readings[kind.name] = reading
    price_date = history.dates[-1] if history.dates else None
    return _evaluation(history, as_of, price_date, readings)


def evaluate_days(
    series: EntitySeries, days: Sequence[date], params: EvaluationParams
) -> Iterator[Evaluation]:
    """The evaluation on each trading day of `days` (ascending), one incremental pass per kind.

    Everything is on the last day's share basis (a split scales a stock's numbers, never its
    states); the last evaluation equals compute_signal on the last day.
    """
    if not days:
        return
    history = prepare_history(series, days[-1], params)
    indices = [bisect.bisect_right(history.dates, day) - 1 for day in days]
    wanted = [i for i in indices if i >= 0]
    passes = {kind.name: kind.evaluate_days(history, wanted, params.of(kind)) for kind in KINDS}
    for day, index in zip(days, indices, strict=True):
        if index < 0:
            continue
        readings = {name: next(readings) for name, readings in passes.items()}
        yield _evaluation(history, day, history.dates[index], readings)


def _evaluation(
    history: History, as_of: date, price_date: date | None, readings: Mapping[str, Reading]
) -> Evaluation:
    details: dict[str, Any] = {"price_date": _iso(price_date)}
    for reading in readings.values():
        details.update(reading.details)
    details["ttm_sales"] = history.timeline.ttm_sales(as_of)
    details["ttm_ebitda"] = history.timeline.ttm_ebitda(as_of)
    details["splits_applied"] = [
        {"ex_date": s.ex_date.isoformat(), "to": s.to_factor, "for": s.for_factor}
        for s in history.splits
        if s.ex_date <= as_of
    ]
    return Evaluation(
        as_of=as_of,
        price_date=price_date,
        readings=readings,
        details=details,
        state_fields=STATE_FIELDS,
    )


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
