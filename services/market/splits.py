"""Split adjustment: bring prices and per-share figures to the as-of date's share basis."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from datetime import date

from services.market.records import QuarterFundamentals, Split


def applicable_splits(splits: Iterable[Split], as_of: date) -> list[Split]:
    """Valid splits (positive finite factors, not 1:1) with ex_date <= as_of, oldest first."""
    kept = [
        s
        for s in splits
        if s.ex_date <= as_of
        and _positive(s.to_factor)
        and _positive(s.for_factor)
        and s.to_factor != s.for_factor
    ]
    return sorted(kept, key=lambda s: s.ex_date)


def price_factor(splits: Sequence[Split], day: date) -> float:
    """Multiplier for a per-share value observed on `day`: product of for/to of later splits."""
    factor = 1.0
    for split in splits:
        if day < split.ex_date:
            factor *= split.for_factor / split.to_factor
    return factor


def adjust_closes(
    dates: Sequence[date], closes: Sequence[float], splits: Sequence[Split]
) -> list[float]:
    """Closes on days before each split's ex_date multiplied by for/to (splits pre-filtered)."""
    if not splits:
        return list(closes)
    adjusted = list(closes)
    ordered = sorted(splits, key=lambda s: s.ex_date, reverse=True)
    factor = 1.0
    pending = 0
    # Walk backwards: every split whose ex_date is after the day applies to it.
    for i in range(len(dates) - 1, -1, -1):
        while pending < len(ordered) and dates[i] < ordered[pending].ex_date:
            factor *= ordered[pending].for_factor / ordered[pending].to_factor
            pending += 1
        if factor != 1.0:
            adjusted[i] = closes[i] * factor
    return adjusted


def adjust_quarters(
    quarters: Sequence[QuarterFundamentals], splits: Sequence[Split]
) -> list[QuarterFundamentals]:
    """EPS of quarters ending before an ex_date times for/to, their share counts times to/for."""
    if not splits:
        return list(quarters)
    adjusted = []
    for quarter in quarters:
        factor = price_factor(splits, quarter.period_end_date)
        if factor == 1.0:
            adjusted.append(quarter)
            continue
        adjusted.append(
            dataclasses.replace(
                quarter,
                diluted_eps=_scaled(quarter.diluted_eps, factor),
                eps_reported=_scaled(quarter.eps_reported, factor),
                eps_estimate=_scaled(quarter.eps_estimate, factor),
                shares_outstanding=_scaled(quarter.shares_outstanding, 1.0 / factor),
            )
        )
    return adjusted


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0
