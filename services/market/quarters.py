"""Quarter usability (availability lag) and trailing-twelve-month sums, shared by the kinds."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import date, timedelta

from services.market.records import QuarterFundamentals

TTM_QUARTERS = 4


def clean_quarters(quarters: Sequence[QuarterFundamentals]) -> list[QuarterFundamentals]:
    """Quarters sorted by period end, one per period end (the last given wins)."""
    by_end = {q.period_end_date: q for q in quarters}
    return [by_end[end] for end in sorted(by_end)]


class QuarterTimeline:
    """Sorted quarters with O(log n) "usable on day d" look-ups and precomputed TTM sums."""

    def __init__(self, quarters: Sequence[QuarterFundamentals], lag_days: int) -> None:
        self.quarters = clean_quarters(quarters)
        lag = timedelta(days=lag_days)
        self._usable_from = [q.period_end_date + lag for q in self.quarters]
        self._ttm_ebitda = _rolling_ttm([q.ebitda for q in self.quarters])
        self._ttm_sales = _rolling_ttm([q.sales for q in self.quarters])
        self._ttm_eps = _rolling_ttm([q.diluted_eps for q in self.quarters])

    def usable_count(self, day: date) -> int:
        """Number of quarters whose period end + lag <= day (they are the oldest ones)."""
        return bisect.bisect_right(self._usable_from, day)

    def latest(self, day: date) -> QuarterFundamentals | None:
        """The latest usable quarter on `day` (source of shares, cash and debt)."""
        count = self.usable_count(day)
        return self.quarters[count - 1] if count else None

    def ttm_ebitda(self, day: date) -> float | None:
        return _at(self._ttm_ebitda, self.usable_count(day))

    def ttm_sales(self, day: date) -> float | None:
        return _at(self._ttm_sales, self.usable_count(day))

    def ttm_eps(self, day: date) -> float | None:
        return _at(self._ttm_eps, self.usable_count(day))

    def ttm_eps_series(self, day: date) -> list[float | None]:
        """TTM EPS ending at each usable quarter on `day`, oldest first."""
        return self._ttm_eps[: self.usable_count(day)]


def _rolling_ttm(values: Sequence[float | None]) -> list[float | None]:
    """Entry k = sum of values k-3..k; None when k < 3 or any of the four is missing."""
    out: list[float | None] = []
    for k in range(len(values)):
        window = values[k - TTM_QUARTERS + 1 : k + 1] if k >= TTM_QUARTERS - 1 else []
        if len(window) == TTM_QUARTERS and all(_finite(v) for v in window):
            out.append(math.fsum(v for v in window if v is not None))
        else:
            out.append(None)
    return out


def _at(series: Sequence[float | None], count: int) -> float | None:
    return series[count - 1] if count else None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
