"""One entity's Signal for an as-of date, from raw (unadjusted) series."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.market.fundamentals import QuarterTimeline, fundamental_direction
from services.market.records import QuarterFundamentals, Split
from services.market.splits import adjust_closes, adjust_quarters, applicable_splits
from services.market.states import (
    EvaluationParams,
    FundamentalDirection,
    TrendPosition,
    ValuationRegime,
)
from services.market.trend import evaluate_trend
from services.market.valuation import evaluate_valuation


class NeedsFullHistory(Exception):
    """A window was too short to fix the trend or EPS-direction state; read everything."""


@dataclass(frozen=True)
class EntitySeries:
    """Raw inputs for one ticker; `complete` / `quarters_complete`: nothing earlier exists."""

    dates: Sequence[date]
    closes: Sequence[float]
    quarters: Sequence[QuarterFundamentals] = ()
    splits: Sequence[Split] = ()
    complete: bool = True
    quarters_complete: bool = True


@dataclass(frozen=True)
class Signal:
    """The three states on `as_of` plus the numbers behind them (split-adjusted to as_of)."""

    as_of: date
    price_date: date | None
    close: float | None
    sma200: float | None
    trend_position: TrendPosition
    valuation_metric: str | None
    valuation_multiple: float | None
    valuation_percentile: float | None
    valuation_regime: ValuationRegime
    eps_ttm: float | None
    fundamental_direction: FundamentalDirection
    details: dict[str, Any] = field(default_factory=dict)


def compute_signal(series: EntitySeries, as_of: date, params: EvaluationParams) -> Signal:
    """The evaluation of one entity: split adjustment, then trend, valuation and EPS direction."""
    end = bisect.bisect_right(series.dates, as_of)
    dates = series.dates[:end]
    splits = applicable_splits(series.splits, as_of)
    closes = adjust_closes(dates, series.closes[:end], splits)
    trend = evaluate_trend(
        dates,
        closes,
        band=params.trend_band,
        confirm_days=params.trend_confirm_days,
        window=params.sma_window,
        history_starts_here=series.complete,
    )
    if not trend.determined:
        raise NeedsFullHistory(as_of)
    timeline = QuarterTimeline(
        adjust_quarters(series.quarters, splits), params.availability_lag_days
    )
    valuation = evaluate_valuation(dates, closes, timeline, as_of, params)
    direction = fundamental_direction(
        timeline, as_of, params.direction_band, history_starts_here=series.quarters_complete
    )
    if not direction.determined:
        raise NeedsFullHistory(as_of)
    price_date = dates[-1] if dates else None
    details: dict[str, Any] = {
        "price_date": _iso(price_date),
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
        "ttm_sales": timeline.ttm_sales(as_of),
        "ttm_ebitda": timeline.ttm_ebitda(as_of),
        "splits_applied": [
            {"ex_date": s.ex_date.isoformat(), "to": s.to_factor, "for": s.for_factor}
            for s in splits
        ],
    }
    return Signal(
        as_of=as_of,
        price_date=price_date,
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


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _gap_pct(close: float | None, sma: float | None) -> float | None:
    if close is None or sma is None or sma == 0:
        return None
    return 100.0 * (close - sma) / sma
