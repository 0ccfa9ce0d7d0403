"""The dividend kind: is the stock paying its regular dividend, has it cut or suspended it.

Input: the stock's cash dividends (ex-date, amount per share as of that date), or None when
they were never fetched (then the state is UNKNOWN, never NONE).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from services.market.records import Dividend, Split
from services.market.series import years_before
from services.market.signals.kind import (
    UNKNOWN,
    DetailField,
    Direction,
    Evaluation,
    History,
    Previous,
    Reading,
    SignalKind,
)
from services.market.splits import applicable_splits, price_factor

NAME = "dividends"


class DividendState(StrEnum):
    PAYING = "PAYING"
    CUT = "CUT"
    SUSPENDED = "SUSPENDED"
    NONE = "NONE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class DividendParams:
    """The dividend rule's numbers (docs/signals.md)."""

    window_years: int = 3
    special_multiple: float = 3.0
    special_lookback: int = 4
    interval_payments: int = 6
    single_payment_interval_days: float = 365.0
    suspended_interval_multiple: float = 1.5
    suspended_min_days: float = 45.0
    cut_ratio: float = 0.9


@dataclass(frozen=True)
class DividendReading:
    """The state on `as_of` and the numbers behind it (amounts per share, as_of's basis)."""

    as_of: date
    state: DividendState
    last_ex_date: date | None = None
    last_amount: float | None = None
    previous_ex_date: date | None = None
    previous_amount: float | None = None
    interval_days: float | None = None
    days_since_last: int | None = None
    regular_payments: int = 0
    specials_ignored: int = 0

    @property
    def cut_pct(self) -> float | None:
        """How much smaller the last regular payment is than the one before, in percent."""
        if self.last_amount is None or not self.previous_amount:
            return None
        return 100.0 * (1.0 - self.last_amount / self.previous_amount)


@dataclass(frozen=True)
class _Window:
    """What the window's payments say whatever the day: the regular ones and their interval."""

    regular: list[Dividend]
    specials: int
    interval: float | None


def adjusted_dividends(dividends: Sequence[Dividend], splits: Sequence[Split]) -> list[Dividend]:
    """Amounts brought to the share basis after every split given (splits pre-filtered)."""
    return sorted(
        (Dividend(d.ex_date, d.amount * price_factor(splits, d.ex_date)) for d in dividends),
        key=lambda d: d.ex_date,
    )


def _classify(window: Sequence[Dividend], params: DividendParams) -> _Window:
    """A payment above special_multiple x the median of the regular ones before it (at least
    special_lookback of them in the window, the last that many) is a special."""
    regular: list[Dividend] = []
    specials = 0
    for payment in window:
        before = regular[-params.special_lookback :]
        if len(before) == params.special_lookback and payment.amount > (
            params.special_multiple * statistics.median(d.amount for d in before)
        ):
            specials += 1
        else:
            regular.append(payment)
    recent = regular[-params.interval_payments :]
    gaps = [(b.ex_date - a.ex_date).days for a, b in zip(recent, recent[1:], strict=False)]
    interval = (
        float(statistics.median(gaps))
        if gaps
        else params.single_payment_interval_days
        if regular
        else None
    )
    return _Window(regular, specials, interval)


def _state(window: _Window, as_of: date, params: DividendParams) -> DividendReading:
    regular, interval = window.regular, window.interval
    if not regular or interval is None:
        return DividendReading(as_of, DividendState.NONE, specials_ignored=window.specials)
    last = regular[-1]
    previous = regular[-2] if len(regular) >= 2 else None
    since = (as_of - last.ex_date).days
    if since > max(params.suspended_interval_multiple * interval, params.suspended_min_days):
        state = DividendState.SUSPENDED
    elif previous is not None and last.amount < params.cut_ratio * previous.amount:
        state = DividendState.CUT
    else:
        state = DividendState.PAYING
    return DividendReading(
        as_of=as_of,
        state=state,
        last_ex_date=last.ex_date,
        last_amount=last.amount,
        previous_ex_date=previous.ex_date if previous else None,
        previous_amount=previous.amount if previous else None,
        interval_days=interval,
        days_since_last=since,
        regular_payments=len(regular),
        specials_ignored=window.specials,
    )


def dividend_pass(
    dividends: Sequence[Dividend] | None,
    splits: Sequence[Split],
    days: Sequence[date],
    params: DividendParams,
) -> Iterator[DividendReading]:
    """The reading on each of `days` (ascending), amounts on the basis after `splits`.

    A split scales every payment before it alike, so states do not depend on the basis. The
    window's split into regular payments and specials is redone only when its payments change.
    """
    if dividends is None:
        for day in days:
            yield DividendReading(day, DividendState.UNKNOWN)
        return
    payments = adjusted_dividends(dividends, splits)
    ex_dates = [d.ex_date for d in payments]
    cached: tuple[tuple[int, int], _Window] | None = None
    for day in days:
        low = bisect.bisect_right(ex_dates, years_before(day, params.window_years))
        high = bisect.bisect_right(ex_dates, day)
        if cached is None or cached[0] != (low, high):
            cached = ((low, high), _classify(payments[low:high], params))
        yield _state(cached[1], day, params)


def evaluate_dividends(
    dividends: Sequence[Dividend] | None,
    splits: Sequence[Split],
    as_of: date,
    params: DividendParams = DividendParams(),
) -> DividendReading:
    """The dividend state on `as_of` from raw payments; `dividends` None: never fetched."""
    applied = applicable_splits(splits, as_of)
    return next(dividend_pass(dividends, applied, [as_of], params))


def _reading(result: DividendReading) -> Reading:
    return Reading(
        state=result.state,
        values={
            "dividend_now": result.last_amount,
            "dividend_before": result.previous_amount,
            "interval_days": result.interval_days,
        },
        details={
            "dividend_last_ex_date": _iso(result.last_ex_date),
            "dividend_previous_ex_date": _iso(result.previous_ex_date),
            "dividend_days_since_last": result.days_since_last,
            "dividend_regular_payments": result.regular_payments,
            "dividend_specials_ignored": result.specials_ignored,
            "dividend_cut_pct": result.cut_pct,
        },
    )


def evaluate(history: History, params: DividendParams) -> Reading:
    """The dividend state on the history's as-of day."""
    raw = history.series.get(NAME)
    return _reading(next(dividend_pass(raw, history.splits, [history.as_of], params)))


def evaluate_days(
    history: History, days: Sequence[int], params: DividendParams
) -> Iterator[Reading]:
    """The dividend state on each of `days` (indices of trading days), in one pass."""
    raw = history.series.get(NAME)
    on = [history.dates[i] for i in days]
    for result in dividend_pass(raw, history.splits, on, params):
        yield _reading(result)


def alerts(old: str, new: str) -> bool:
    """A cut, a suspension, an initiation and a resumption alert; other changes are silent."""
    if UNKNOWN in (old, new) or old == new:
        return False
    return (old, new) in _ALERTING


_ALERTING = {
    (DividendState.PAYING, DividendState.CUT),
    (DividendState.PAYING, DividendState.SUSPENDED),
    (DividendState.CUT, DividendState.SUSPENDED),
    (DividendState.NONE, DividendState.PAYING),
    (DividendState.SUSPENDED, DividendState.PAYING),
    (DividendState.SUSPENDED, DividendState.CUT),
}


def explain(
    ticker: str, old: str, new: str, now: Evaluation, prev: Previous | None
) -> tuple[str, str, str]:
    """Headline, what changed and why it matters for a dividend change."""
    amount, before = now.value("dividend_now"), now.value("dividend_before")
    last_ex = now.details.get("dividend_last_ex_date")
    previous_ex = now.details.get("dividend_previous_ex_date")
    interval = now.value("interval_days")
    if new == DividendState.SUSPENDED:
        days = now.details.get("dividend_days_since_last")
        headline = f"{ticker} has stopped paying its dividend"
        changed = (
            f"No regular dividend has gone ex since {last_ex} ({days} days ago), against a "
            f"usual interval of {_days(interval)}; the last one was {money(amount)} a share."
        )
        why = (
            "A regular payment that is this overdue usually means the board suspended or "
            "skipped it, which tends to reflect strain on cash flow; income from the shares "
            "stops until it resumes."
        )
    elif old == DividendState.SUSPENDED:
        lower = new == DividendState.CUT
        headline = f"{ticker} resumed its dividend" + (" at a lower amount" if lower else "")
        changed = f"A regular dividend of {money(amount)} a share went ex on {last_ex}"
        if previous_ex:
            changed += f", after the previous one of {money(before)} on {previous_ex}"
        changed += "."
        why = (
            "Restarting a suspended dividend signals the board expects cash flow to cover it "
            "again" + (", though below the earlier level." if lower else ".")
        )
    elif new == DividendState.CUT:
        cut = now.details.get("dividend_cut_pct")
        headline = f"{ticker} cut its dividend" + (f" by {cut:.0f} %" if cut is not None else "")
        changed = (
            f"The regular dividend going ex on {last_ex} is {money(amount)} a share, down "
            f"from {money(before)} on {previous_ex}."
        )
        why = (
            "A dividend cut is one of the clearest statements a board makes about the cash it "
            "expects: shareholders relying on the income receive less from now on."
        )
    else:
        headline = f"{ticker} started paying a dividend"
        changed = (
            f"A regular dividend of {money(amount)} a share went ex on {last_ex}, the first "
            "in three years."
        )
        why = (
            "Starting a dividend signals the board expects enough steady cash to return some "
            "of it to shareholders regularly."
        )
    return headline, changed, why


def steady(state: str, now: Evaluation) -> str:
    """The dividend state held."""
    amount = money(now.value("dividend_now"))
    return {
        DividendState.PAYING: f"The dividend is unchanged: still paid ({amount} a share).",
        DividendState.CUT: f"The dividend is still at its reduced level ({amount} a share).",
        DividendState.SUSPENDED: "The dividend is still suspended.",
        DividendState.NONE: "The stock still pays no regular dividend.",
    }.get(DividendState(state), "")


def facts(values: Mapping[str, Any]) -> list[str]:
    """The last regular dividend for the before-vs-now section (nothing when none is known)."""
    amount = values.get("dividend_now")
    return [] if amount is None else [f"dividend {money(amount)} a share"]


def money(value: float | None) -> str:
    """A per-share dividend: cents, or up to four decimals where they matter ($0.3258)."""
    if value is None:
        return "n/a"
    text = f"{value:.4f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"${text}"


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _days(interval: float | None) -> str:
    return "n/a" if interval is None else f"{interval:.0f} days"


KIND = SignalKind(
    name=NAME,
    alert_type="dividend_change",
    label="Dividend",
    states=DividendState,
    arrows={DividendState.CUT: Direction.DOWN, DividendState.SUSPENDED: Direction.DOWN},
    state_field="dividend_state",
    params_type=DividendParams,
    per_share=("dividend_now", "dividend_before"),
    evaluate=evaluate,
    evaluate_days=evaluate_days,
    alerts=alerts,
    explain=explain,
    steady=steady,
    facts=facts,
    facts_rank=3,
    snapshot_now=("dividend_now", "dividend_before", "interval_days"),
    snapshot_before=("dividend_now",),
    detail_fields=(
        DetailField(
            "dividend_before",
            float,
            "now",
            "dividend_before",
            "The regular dividend before the latest one, per share (the alert day's basis).",
        ),
        DetailField(
            "dividend_now",
            float,
            "now",
            "dividend_now",
            "The latest regular dividend, per share (the alert day's basis).",
        ),
        DetailField(
            "interval_days",
            float,
            "now",
            "interval_days",
            "The usual days between regular dividends (median of the latest gaps).",
        ),
    ),
)
