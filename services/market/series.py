"""Shared series arithmetic: moving averages and calendar windows over trading days."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date


def sma_series(closes: Sequence[float], window: int) -> list[float | None]:
    """SMA(d) = mean of the `window` closes ending at d; None before the window-th close."""
    out: list[float | None] = [None] * len(closes)
    if len(closes) < window:
        return out
    total = sum(closes[:window])
    out[window - 1] = total / window
    for i in range(window, len(closes)):
        total += closes[i] - closes[i - window]
        out[i] = total / window
    return out


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)
