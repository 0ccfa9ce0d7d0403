"""Market-data records shared by the DoltHub client, the Parquet layout and the evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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
    """One fiscal quarter's figures (SPEC §8 definitions); None where the source has none."""

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
