"""The evaluation's tunable numbers as the environment configures them (one reading)."""

from __future__ import annotations

from services.market.states import EvaluationParams
from services.settings import Settings


def evaluation_params(settings: Settings) -> EvaluationParams:
    """EvaluationParams from the settings (the daily evaluator and the signal history agree)."""
    return EvaluationParams(
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
