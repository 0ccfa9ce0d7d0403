"""The three tracked states, the alert types, and the evaluation parameters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.settings import Settings


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


class AlertType(StrEnum):
    VALUATION_REGIME_CHANGE = "valuation_regime_change"
    TREND_BREAK = "trend_break"
    FUNDAMENTAL_INFLECTION = "fundamental_inflection"


UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class EvaluationParams:
    """Every tunable number of SPEC §8, with the spec's defaults."""

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

    @classmethod
    def from_settings(cls, settings: Settings) -> EvaluationParams:
        """Parameters as configured by the environment."""
        return cls(
            trend_band=settings.trend_band,
            trend_confirm_days=settings.trend_confirm_days,
            cheap_percentile=settings.valuation_cheap_percentile,
            cheap_exit_percentile=settings.valuation_cheap_exit_percentile,
            expensive_percentile=settings.valuation_expensive_percentile,
            expensive_exit_percentile=settings.valuation_expensive_exit_percentile,
            min_history=settings.valuation_min_history,
            iqr_k=settings.valuation_iqr_k,
            ebitda_positive_share=settings.valuation_ebitda_positive_share,
            availability_lag_days=settings.fundamentals_lag_days,
        )
