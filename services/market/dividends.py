"""The dividend rule: a stock's dividend state on an as-of date from its raw payments (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.market.records import Dividend, Split
from services.market.splits import applicable_splits, price_factor
from services.market.valuation import years_before


class DividendState(StrEnum):
    PAYING = "PAYING"
    CUT = "CUT"
    SUSPENDED = "SUSPENDED"
    NONE = "NONE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class DividendParams:
    """The rule's numbers, with their defaults (docs/signals.md)."""

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


def evaluate_dividends(
    dividends: Sequence[Dividend] | None,
    splits: Sequence[Split],
    as_of: date,
    params: DividendParams = DividendParams(),
) -> DividendReading:
    """The dividend state on `as_of`; `dividends` None means they were never fetched."""
    if dividends is None:
        return DividendReading(as_of, DividendState.UNKNOWN)
    applied = applicable_splits(splits, as_of)
    start = years_before(as_of, params.window_years)
    window = sorted(
        (
            Dividend(d.ex_date, d.amount * price_factor(applied, d.ex_date))
            for d in dividends
            if start < d.ex_date <= as_of
        ),
        key=lambda d: d.ex_date,
    )
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
    if not regular:
        return DividendReading(as_of, DividendState.NONE, specials_ignored=specials)
    recent = regular[-params.interval_payments :]
    gaps = [(b.ex_date - a.ex_date).days for a, b in zip(recent, recent[1:], strict=False)]
    interval = float(statistics.median(gaps)) if gaps else params.single_payment_interval_days
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
        previous_amount=previous.amount if previous else None,
        interval_days=interval,
        days_since_last=since,
        regular_payments=len(regular),
        specials_ignored=specials,
    )
