"""The trend kind: the close against its 200-day average, banded and n-day confirmed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from services.market.series import sma_series
from services.market.signals.kind import (
    DetailField,
    Direction,
    Evaluation,
    History,
    Previous,
    Reading,
    SignalKind,
    known_change,
    setting,
)
from services.market.text import gap, money


class TrendPosition(StrEnum):
    ABOVE_200DMA = "ABOVE_200DMA"
    BELOW_200DMA = "BELOW_200DMA"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class TrendParams:
    """The trend rule's numbers (docs/signals.md)."""

    band: float = setting(0.02, "TREND_BAND")
    confirm_days: int = setting(3, "TREND_CONFIRM_DAYS", minimum=1)
    window: int = 200


@dataclass(frozen=True)
class TrendResult:
    """Trend on the last day of the series; `determined` is False when history was too short."""

    position: TrendPosition
    close: float | None
    sma200: float | None
    since: date | None
    determined: bool = True


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
    last = len(closes) - 1
    for result in trend_pass(
        dates,
        closes,
        [last],
        band=band,
        confirm_days=confirm_days,
        window=window,
        history_starts_here=history_starts_here,
    ):
        return result
    raise AssertionError("a pass yields one result per requested day")


def trend_pass(
    dates: Sequence[date],
    closes: Sequence[float],
    days: Sequence[int],
    *,
    band: float,
    confirm_days: int,
    window: int = 200,
    history_starts_here: bool = True,
) -> Iterator[TrendResult]:
    """One run of the state machine, yielding the state on each of `days` (ascending indices)."""
    sma = sma_series(closes, window)
    first = window - 1
    state: TrendPosition | None = None
    since: date | None = None
    up = down = 0
    upper_factor, lower_factor = 1.0 + band, 1.0 - band
    i = first
    for day in days:
        if day < first:
            yield TrendResult(TrendPosition.UNKNOWN, closes[day], None, None)
            continue
        while i <= day:
            average = sma[i]
            assert average is not None
            close = closes[i]
            if i == first and history_starts_here:
                state = (
                    TrendPosition.ABOVE_200DMA if close >= average else TrendPosition.BELOW_200DMA
                )
                since = dates[i]
            else:
                up = up + 1 if close > average * upper_factor else 0
                down = down + 1 if close < average * lower_factor else 0
                if state is not TrendPosition.ABOVE_200DMA and up >= confirm_days:
                    since = dates[i] if state is not None else None
                    state, up, down = TrendPosition.ABOVE_200DMA, 0, 0
                elif state is not TrendPosition.BELOW_200DMA and down >= confirm_days:
                    since = dates[i] if state is not None else None
                    state, up, down = TrendPosition.BELOW_200DMA, 0, 0
            i += 1
        if state is None:
            yield TrendResult(TrendPosition.UNKNOWN, closes[day], sma[day], None, determined=False)
        else:
            yield TrendResult(state, closes[day], sma[day], since)


def _reading(result: TrendResult, params: TrendParams) -> Reading:
    return Reading(
        state=result.position,
        values={"close": result.close, "sma200": result.sma200},
        details={
            "trend_since": _iso(result.since),
            "sma_gap_pct": _gap_pct(result.close, result.sma200),
            "trend_band": params.band,
            "trend_confirm_days": params.confirm_days,
        },
        determined=result.determined,
    )


def evaluate(history: History, params: TrendParams) -> Reading:
    """The trend on the history's last day."""
    result = evaluate_trend(
        history.dates,
        history.closes,
        band=params.band,
        confirm_days=params.confirm_days,
        window=params.window,
        history_starts_here=history.complete,
    )
    return _reading(result, params)


def evaluate_days(history: History, days: Sequence[int], params: TrendParams) -> Iterator[Reading]:
    """The trend on each of `days`, in one pass of the state machine."""
    for result in trend_pass(
        history.dates,
        history.closes,
        days,
        band=params.band,
        confirm_days=params.confirm_days,
        window=params.window,
        history_starts_here=history.complete,
    ):
        yield _reading(result, params)


def explain(
    ticker: str, old: str, new: str, now: Evaluation, prev: Previous | None
) -> tuple[str, str, str]:
    """Headline, what changed and why it matters for a trend break."""
    below = new == TrendPosition.BELOW_200DMA
    headline = (
        f"{ticker} broke below its 200-day average"
        if below
        else f"{ticker} moved back above its 200-day average"
    )
    close, sma = now.value("close"), now.value("sma200")
    changed = (
        f"The close of {money(close)} is {gap(close, sma)} its 200-day average of {money(sma)}"
    )
    if prev and prev.values.get("close") is not None and prev.values.get("sma200") is not None:
        before_close, before_sma = prev.values["close"], prev.values["sma200"]
        changed += (
            f"; on {prev.as_of.isoformat()} it was {gap(before_close, before_sma)} "
            f"({money(before_close)} vs {money(before_sma)})"
        )
    changed += "."
    side = "below" if below else "above"
    band = 100.0 * float(now.details.get("trend_band", TrendParams.band))
    days = now.details.get("trend_confirm_days", TrendParams.confirm_days)
    why = (
        f"The price has closed {side} its 200-day average by more than {band:g}% on {days} "
        "consecutive trading days, which confirms a change in the longer-term trend rather "
        "than a one-day wobble."
    )
    return headline, changed, why


def steady(state: str, now: Evaluation) -> str:
    """The trend held."""
    side = "above" if state == TrendPosition.ABOVE_200DMA else "below"
    return f"The trend is unchanged: still {side} its 200-day average."


def facts(values: Mapping[str, Any]) -> list[str]:
    """The close and its average for the before-vs-now section."""
    close, sma = values.get("close"), values.get("sma200")
    average = f"200-day average {money(sma)}"
    if close is not None and sma is not None:
        average += f" (close {gap(close, sma)})"
    return [f"close {money(close)}", average]


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _gap_pct(close: float | None, sma: float | None) -> float | None:
    if close is None or sma is None or sma == 0:
        return None
    return 100.0 * (close - sma) / sma


KIND = SignalKind(
    name="trend",
    alert_type="trend_break",
    label="200-day trend",
    states=TrendPosition,
    arrows={TrendPosition.ABOVE_200DMA: Direction.UP, TrendPosition.BELOW_200DMA: Direction.DOWN},
    state_field="trend_position",
    params_type=TrendParams,
    per_share=("close", "sma200"),
    evaluate=evaluate,
    evaluate_days=evaluate_days,
    alerts=known_change,
    explain=explain,
    steady=steady,
    facts=facts,
    facts_rank=0,
    snapshot_now=("close", "sma200"),
    snapshot_before=("close", "sma200"),
    detail_fields=(
        DetailField("close", float, "now", "close"),
        DetailField("sma200", float, "now", "sma200"),
    ),
)
