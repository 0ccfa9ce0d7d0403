"""Market-data records shared by the DoltHub client, the Parquet layout and the evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PriceBar:
    """One unadjusted daily OHLCV bar."""

    date: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class QuarterFundamentals:
    """One fiscal quarter's figures (defined in docs/signals.md); None where the source has none."""

    period_end_date: date
    sales: float | None = None
    ebitda: float | None = None
    ebit: float | None = None
    net_income: float | None = None
    diluted_eps: float | None = None
    shares_outstanding: float | None = None
    cash: float | None = None
    total_debt: float | None = None
    eps_reported: float | None = None
    eps_estimate: float | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """A split on `ex_date` multiplying the share count by `to_factor / for_factor`."""

    ex_date: date
    to_factor: float
    for_factor: float


@dataclass(frozen=True, slots=True)
class Dividend:
    """A cash dividend of `amount` per share (in the share basis of `ex_date`) going ex on it."""

    ex_date: date
    amount: float


_NUMBER = (int, float, Decimal)


def _is_day(value: object) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def price_bar_problem(bar: PriceBar) -> str | None:
    """Why `bar` cannot be stored (NaN, negative, non-date), or None when it is valid."""
    if not _is_day(bar.date):
        return f"date must be a datetime.date, got {bar.date!r}"
    for name in ("open", "high", "low", "close"):
        value = getattr(bar, name)
        if not isinstance(value, _NUMBER) or not math.isfinite(value) or value < 0:
            return f"{name} must be a finite number >= 0, got {value!r}"
    if isinstance(bar.volume, bool) or not isinstance(bar.volume, int) or bar.volume < 0:
        return f"volume must be an integer >= 0, got {bar.volume!r}"
    return None


def fundamentals_problem(row: QuarterFundamentals) -> str | None:
    """Why `row` cannot be stored (NaN, non-date period end), or None when it is valid."""
    if not _is_day(row.period_end_date):
        return f"period_end_date must be a datetime.date, got {row.period_end_date!r}"
    for field in fields(QuarterFundamentals)[1:]:
        name = field.name
        value = getattr(row, name)
        if value is not None and (not isinstance(value, _NUMBER) or not math.isfinite(value)):
            return f"{name} must be a finite number or None, got {value!r}"
    return None


def split_problem(split: Split) -> str | None:
    """Why `split` cannot be stored (factor <= 0, NaN, non-date), or None when it is valid."""
    if not _is_day(split.ex_date):
        return f"ex_date must be a datetime.date, got {split.ex_date!r}"
    for name in ("to_factor", "for_factor"):
        value = getattr(split, name)
        if not isinstance(value, _NUMBER) or not math.isfinite(value) or value <= 0:
            return f"{name} must be a finite number > 0, got {value!r}"
    return None


def dividend_problem(dividend: Dividend) -> str | None:
    """Why `dividend` cannot be stored (amount <= 0, NaN, non-date), or None when it is valid."""
    if not _is_day(dividend.ex_date):
        return f"ex_date must be a datetime.date, got {dividend.ex_date!r}"
    value = dividend.amount
    if not isinstance(value, _NUMBER) or not math.isfinite(value) or value <= 0:
        return f"amount must be a finite number > 0, got {value!r}"
    return None
