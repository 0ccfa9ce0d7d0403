"""The fundamentals kind: the direction of trailing-twelve-month EPS, quarter by quarter."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from services.market.quarters import TTM_QUARTERS, QuarterTimeline
from services.market.signals.kind import (
    DetailField,
    Direction,
    Evaluation,
    History,
    Previous,
    Reading,
    SignalKind,
    known_change,
)
from services.market.text import change_pct, money

DIRECTION_MIN_QUARTERS = 8


class FundamentalDirection(StrEnum):
    IMPROVING = "IMPROVING"
    DETERIORATING = "DETERIORATING"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class FundamentalsParams:
    """The EPS-direction rule's numbers (docs/signals.md)."""

    direction_band: float = 0.02


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


def _reading(result: DirectionResult) -> Reading:
    return Reading(
        state=result.direction,
        values={"eps_ttm": result.eps_ttm},
        details={
            "eps_ttm_year_ago": result.eps_ttm_year_ago,
            "usable_quarters": result.quarters_used,
            "latest_quarter_end": result.latest_period_end.isoformat()
            if result.latest_period_end
            else None,
        },
        determined=result.determined,
    )


def evaluate(history: History, params: FundamentalsParams) -> Reading:
    """The EPS direction on the history's last day."""
    result = fundamental_direction(
        history.timeline,
        history.as_of,
        params.direction_band,
        history_starts_here=history.quarters_complete,
    )
    return _reading(result)


def evaluate_days(
    history: History, days: Sequence[int], params: FundamentalsParams
) -> Iterator[Reading]:
    """The direction on each of `days`; recomputed only when a new quarter becomes usable."""
    cached: tuple[int, Reading] | None = None
    for day in days:
        as_of = history.dates[day]
        usable = history.timeline.usable_count(as_of)
        if cached is None or cached[0] != usable:
            result = fundamental_direction(
                history.timeline,
                as_of,
                params.direction_band,
                history_starts_here=history.quarters_complete,
            )
            cached = (usable, _reading(result))
        yield cached[1]


def explain(
    ticker: str, old: str, new: str, now: Evaluation, prev: Previous | None
) -> tuple[str, str, str]:
    """Headline, what changed and why it matters for an EPS inflection."""
    up = new == FundamentalDirection.IMPROVING
    headline = f"{ticker}'s earnings turned {'up' if up else 'down'}"
    year_ago = now.details.get("eps_ttm_year_ago")
    eps = now.value("eps_ttm")
    changed = (
        f"Trailing-12-month diluted EPS is {money(eps)} vs {money(year_ago)} "
        f"a year earlier ({change_pct(year_ago, eps)})"
    )
    quarter = now.details.get("latest_quarter_end")
    changed += f", through the quarter ended {quarter}." if quarter else "."
    why = (
        "Earnings per share over the last four quarters are now growing year over year; "
        "the profit behind each share has turned higher."
        if up
        else "Earnings per share over the last four quarters are now shrinking year over "
        "year; the profit behind each share has turned lower."
    )
    return headline, changed, why


def steady(state: str, now: Evaluation) -> str:
    """The direction held."""
    word = "improving" if state == FundamentalDirection.IMPROVING else "deteriorating"
    return (
        f"Fundamentals are unchanged: earnings still {word} "
        f"(EPS TTM {money(now.value('eps_ttm'))})."
    )


def facts(values: Mapping[str, Any]) -> list[str]:
    """TTM EPS for the before-vs-now section."""
    return [f"EPS (TTM) {money(values.get('eps_ttm'))}"]


KIND = SignalKind(
    name="fundamentals",
    alert_type="fundamental_inflection",
    label="EPS direction",
    states=FundamentalDirection,
    arrows={
        FundamentalDirection.IMPROVING: Direction.UP,
        FundamentalDirection.DETERIORATING: Direction.DOWN,
    },
    state_field="fundamental_direction",
    params_type=FundamentalsParams,
    per_share=("eps_ttm",),
    evaluate=evaluate,
    evaluate_days=evaluate_days,
    alerts=known_change,
    explain=explain,
    steady=steady,
    facts=facts,
    facts_rank=1,
    snapshot_now=("eps_ttm", "eps_ttm_year_ago"),
    snapshot_before=("eps_ttm",),
    detail_fields=(
        DetailField("eps_ttm_before", float, "before", "eps_ttm"),
        DetailField("eps_ttm_now", float, "now", "eps_ttm"),
    ),
)
