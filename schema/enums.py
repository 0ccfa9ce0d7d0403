"""GraphQL enums; each member's value is what the database stores."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum
class InvestingStyle(Enum):
    VALUE = "value"
    GROWTH = "growth"
    BLEND = "blend"


@strawberry.enum
class Direction(Enum):
    UP = "UP"
    DOWN = "DOWN"
    NEUTRAL = "NEUTRAL"


@strawberry.enum
class ValuationRegime(Enum):
    CHEAP = "CHEAP"
    NORMAL = "NORMAL"
    EXPENSIVE = "EXPENSIVE"
    UNKNOWN = "UNKNOWN"


@strawberry.enum
class TrendPosition(Enum):
    ABOVE_200DMA = "ABOVE_200DMA"
    BELOW_200DMA = "BELOW_200DMA"
    UNKNOWN = "UNKNOWN"


@strawberry.enum
class FundamentalDirection(Enum):
    IMPROVING = "IMPROVING"
    DETERIORATING = "DETERIORATING"
    UNKNOWN = "UNKNOWN"


@strawberry.enum
class AlertType(Enum):
    VALUATION_REGIME_CHANGE = "valuation_regime_change"
    TREND_BREAK = "trend_break"
    FUNDAMENTAL_INFLECTION = "fundamental_inflection"


@strawberry.enum
class DataStatus(Enum):
    NONE = "none"
    QUEUED = "queued"
    READY = "ready"
    UNAVAILABLE = "unavailable"


@strawberry.enum
class BackfillStatus(Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


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
    """CHEAP → DOWN, EXPENSIVE → UP, NORMAL and UNKNOWN → NEUTRAL (SPEC §1)."""
    return _VALUATION_ARROWS.get(regime, Direction.NEUTRAL)


def trend_arrow(position: TrendPosition) -> Direction:
    """ABOVE → UP, BELOW → DOWN, UNKNOWN → NEUTRAL (SPEC §1)."""
    return _TREND_ARROWS.get(position, Direction.NEUTRAL)


def fundamentals_arrow(direction: FundamentalDirection) -> Direction:
    """IMPROVING → UP, DETERIORATING → DOWN, UNKNOWN → NEUTRAL (SPEC §1)."""
    return _FUNDAMENTAL_ARROWS.get(direction, Direction.NEUTRAL)
