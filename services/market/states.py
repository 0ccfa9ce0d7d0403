"""The domain's vocabulary: the three tracked states, their arrows, the alert types, and the
evaluation parameters. GraphQL exposes these classes as they are (Strawberry registers
an enum the first time a type annotation names it), so there is no second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TrendPosition(StrEnum):
    ABOVE_200DMA = "ABOVE_200DMA"
    BELOW_200DMA = "BELOW_200DMA"
    UNKNOWN = "UNKNOWN"


class ValuationRegime(StrEnum):
    CHEAP = "CHEAP"
    NORMAL = "NORMAL"
    EXPENSIVE = "EXPENSIVE"
    UNKNOWN = "UNKNOWN"


class FundamentalDirection(StrEnum):
    IMPROVING = "IMPROVING"
    DETERIORATING = "DETERIORATING"
    UNKNOWN = "UNKNOWN"


class Direction(StrEnum):
    """The arrow the frontend shows for a state."""

    UP = "UP"
    DOWN = "DOWN"
    NEUTRAL = "NEUTRAL"


class AlertType(StrEnum):
    VALUATION_REGIME_CHANGE = "valuation_regime_change"
    TREND_BREAK = "trend_break"
    FUNDAMENTAL_INFLECTION = "fundamental_inflection"


UNKNOWN = "UNKNOWN"

_VALUATION_ARROWS = {
    ValuationRegime.CHEAP: Direction.DOWN,
    ValuationRegime.EXPENSIVE: Direction.UP,
}
_TREND_ARROWS = {
    TrendPosition.ABOVE_200DMA: Direction.UP,
    TrendPosition.BELOW_200DMA: Direction.DOWN,
}
_FUNDAMENTAL_ARROWS = {
    FundamentalDirection.IMPROVING: Direction.UP,
    FundamentalDirection.DETERIORATING: Direction.DOWN,
}


def valuation_arrow(regime: ValuationRegime) -> Direction:
    """CHEAP → DOWN, EXPENSIVE → UP, NORMAL and UNKNOWN → NEUTRAL."""
    return _VALUATION_ARROWS.get(regime, Direction.NEUTRAL)


def trend_arrow(position: TrendPosition) -> Direction:
    """ABOVE → UP, BELOW → DOWN, UNKNOWN → NEUTRAL."""
    return _TREND_ARROWS.get(position, Direction.NEUTRAL)


def fundamentals_arrow(direction: FundamentalDirection) -> Direction:
    """IMPROVING → UP, DETERIORATING → DOWN, UNKNOWN → NEUTRAL."""
    return _FUNDAMENTAL_ARROWS.get(direction, Direction.NEUTRAL)


@dataclass(frozen=True)
class EvaluationParams:
    """Every tunable number of the evaluation, with its default (docs/signals.md)."""

    trend_band: float = 0.02
    trend_confirm_days: int = 3
    sma_window: int = 200
    cheap_percentile: float = 20.0
    cheap_exit_percentile: float = 30.0
    expensive_percentile: float = 80.0
    expensive_exit_percentile: float = 70.0
    min_history: int = 36
    iqr_k: float = 3.0
    ebitda_positive_share: float = 0.75
    availability_lag_days: int = 45
    history_years: int = 10
    direction_band: float = 0.02
