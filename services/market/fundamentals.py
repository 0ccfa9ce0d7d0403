"""Quarter usability (availability lag), trailing-twelve-month sums and the EPS direction."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from services.market.records import QuarterFundamentals
from services.market.states import FundamentalDirection

TTM_QUARTERS = 4
DIRECTION_MIN_QUARTERS = 8


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


@dataclass(frozen=True)
class DirectionResult:
    """EPS direction on the as-of day with the last comparison's numbers."""

    direction: FundamentalDirection
    eps_ttm: float | None
    eps_ttm_year_ago: float | None
    quarters_used: int
    latest_period_end: date | None
    determined: bool = True


def fundamental_direction(
    timeline: QuarterTimeline, day: date, band_share: float, *, history_starts_here: bool = True
) -> DirectionResult:
    """From the 8th usable quarter on, TTM EPS vs the TTM of the 4 quarters before.

    A comparison whose TTMs are incomplete (missing EPS) is skipped and the state kept. With
    `history_starts_here=False` the quarters are a window of a longer history: the state is
    unknown until a comparison outside the band fixes it (every earlier path agrees from
    there), and `determined` is False when none does.
    """
    ttm = timeline.ttm_eps_series(day)
    state: FundamentalDirection | None = None
    for k in range(DIRECTION_MIN_QUARTERS - 1, len(ttm)):
        now, before = ttm[k], ttm[k - TTM_QUARTERS]
        if now is None or before is None:
            continue
        change = now - before
        band = band_share * abs(before)
        if state is None and history_starts_here:
            state = (
                FundamentalDirection.IMPROVING
                if change >= 0
                else FundamentalDirection.DETERIORATING
            )
        elif change > band:
            state = FundamentalDirection.IMPROVING
        elif change < -band:
            state = FundamentalDirection.DETERIORATING
    latest = timeline.latest(day)
    count = len(ttm)
    return DirectionResult(
        determined=state is not None or history_starts_here,
        direction=state or FundamentalDirection.UNKNOWN,
        eps_ttm=ttm[-1] if ttm else None,
        eps_ttm_year_ago=ttm[-1 - TTM_QUARTERS] if count > TTM_QUARTERS else None,
        quarters_used=count,
        latest_period_end=latest.period_end_date if latest else None,
    )
