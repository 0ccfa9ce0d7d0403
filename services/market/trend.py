"""200-day simple moving average and the banded, n-day-confirmed trend state machine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.market.states import TrendPosition


@dataclass(frozen=True)
class TrendResult:
    """Trend on the last day of the series; `determined` is False when history was too short."""

    position: TrendPosition
    close: float | None
    sma200: float | None
    since: date | None
    determined: bool = True


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


def evaluate_trend(
    dates: Sequence[date],
    closes: Sequence[float],
    *,
    band: float,
    confirm_days: int,
    window: int = 200,
    history_starts_here: bool = True,
) -> TrendResult:
    """Run the banded, confirmed state machine over the series; the result is the last day's state.

    With `history_starts_here=False` the series is a window of a longer history, so the start
    state is unknown: the machine stays undetermined until a full confirmation streak fixes it
    (from then on every possible start state gives the same path), and reports
    `determined=False` if none occurs.
    """
    if not closes:
        return TrendResult(TrendPosition.UNKNOWN, None, None, None)
    last_close = closes[-1]
    if len(closes) < window:
        return TrendResult(TrendPosition.UNKNOWN, last_close, None, None)
    sma = sma_series(closes, window)
    first = window - 1
    state: TrendPosition | None = None
    since: date | None = None
    if history_starts_here:
        first_sma = sma[first]
        assert first_sma is not None
        state = (
            TrendPosition.ABOVE_200DMA if closes[first] >= first_sma else TrendPosition.BELOW_200DMA
        )
        since = dates[first]
        first += 1
    up = down = 0
    upper_factor, lower_factor = 1.0 + band, 1.0 - band
    for i in range(first, len(closes)):
        average = sma[i]
        assert average is not None
        close = closes[i]
        up = up + 1 if close > average * upper_factor else 0
        down = down + 1 if close < average * lower_factor else 0
        if state is not TrendPosition.ABOVE_200DMA and up >= confirm_days:
            since = dates[i] if state is not None else None
            state, up, down = TrendPosition.ABOVE_200DMA, 0, 0
        elif state is not TrendPosition.BELOW_200DMA and down >= confirm_days:
            since = dates[i] if state is not None else None
            state, up, down = TrendPosition.BELOW_200DMA, 0, 0
    if state is None:
        return TrendResult(TrendPosition.UNKNOWN, last_close, sma[-1], None, determined=False)
    return TrendResult(state, last_close, sma[-1], since)
