"""The dividend kind: its rule branch by branch, its transitions, arrows and daily pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from services.market.evaluation import EntitySeries, compute_signal
from services.market.explanation import explain
from services.market.quarters import QuarterTimeline
from services.market.records import Dividend, Split
from services.market.signals import dividend
from services.market.signals.dividend import DividendState, evaluate_dividends
from services.market.signals.kind import Direction, History, Previous
from services.market.signals.registry import KINDS, EvaluationParams
from services.market.transitions import transitions
from tests.fixtures.evaluation import D1, D2, D3, scenario_series

D = date(2025, 6, 30)


def quarterly(first: date, amounts: list[float], gap: int = 91) -> list[Dividend]:
    return [Dividend(first + timedelta(days=gap * i), a) for i, a in enumerate(amounts)]


def test_never_fetched_is_unknown() -> None:
    reading = evaluate_dividends(None, [], D)
    assert reading.state is DividendState.UNKNOWN
    assert reading.last_amount is None


def test_fetched_and_empty_is_none() -> None:
    assert evaluate_dividends([], [], D).state is DividendState.NONE


def test_window_is_three_years_open_below_closed_above() -> None:
    on_lower_bound = Dividend(date(2022, 6, 30), 1.0)  # D - 3 years: outside
    assert evaluate_dividends([on_lower_bound], [], D).state is DividendState.NONE
    after_as_of = Dividend(D + timedelta(days=1), 1.0)
    assert evaluate_dividends([after_as_of], [], D).state is DividendState.NONE
    on_as_of = Dividend(D, 1.0)
    reading = evaluate_dividends([on_lower_bound, on_as_of], [], D)
    assert reading.state is DividendState.PAYING
    assert reading.regular_payments == 1


def test_single_payment_interval_is_365_days() -> None:
    paid = date(2024, 1, 2)
    reading = evaluate_dividends([Dividend(paid, 0.5)], [], paid + timedelta(days=547))
    assert reading.interval_days == 365
    assert reading.state is DividendState.PAYING  # 547 <= 1.5 x 365
    late = evaluate_dividends([Dividend(paid, 0.5)], [], paid + timedelta(days=548))
    assert late.state is DividendState.SUSPENDED


def test_interval_is_median_gap_of_last_six_regular_payments() -> None:
    # Gaps 30, 30, 30 early on, then 91 x 5: only the last 6 payments (5 gaps) count.
    days = [date(2023, 1, 2) + timedelta(days=30 * i) for i in range(4)]
    days += [days[-1] + timedelta(days=91 * i) for i in range(1, 6)]
    dividends = [Dividend(day, 0.25) for day in days]
    reading = evaluate_dividends(dividends, [], days[-1] + timedelta(days=10))
    assert reading.interval_days == 91
    uneven = [Dividend(date(2024, 1, 1) + timedelta(days=n), 0.25) for n in (0, 80, 180, 270)]
    assert evaluate_dividends(uneven, [], date(2024, 10, 1)).interval_days == 90  # 80, 100, 90


def test_suspended_after_one_and_a_half_intervals() -> None:
    dividends = quarterly(date(2024, 1, 2), [0.5] * 4)  # last on 2024-09-30, interval 91
    last = dividends[-1].ex_date
    assert evaluate_dividends(dividends, [], last + timedelta(days=136)).state == "PAYING"
    assert evaluate_dividends(dividends, [], last + timedelta(days=137)).state == "SUSPENDED"


def test_suspended_needs_at_least_45_days_for_monthly_payers() -> None:
    dividends = quarterly(date(2025, 1, 2), [0.1] * 6, gap=28)  # 1.5 x 28 = 42 < 45
    last = dividends[-1].ex_date
    assert evaluate_dividends(dividends, [], last + timedelta(days=45)).state == "PAYING"
    assert evaluate_dividends(dividends, [], last + timedelta(days=46)).state == "SUSPENDED"


def test_suspended_wins_over_cut() -> None:
    dividends = quarterly(date(2023, 1, 3), [0.5, 0.5, 0.2])
    reading = evaluate_dividends(dividends, [], dividends[-1].ex_date + timedelta(days=200))
    assert reading.state is DividendState.SUSPENDED


def test_cut_when_last_below_ninety_percent_of_previous() -> None:
    dividends = quarterly(date(2024, 12, 1), [0.50, 0.50, 0.44])
    reading = evaluate_dividends(dividends, [], D)
    assert reading.state is DividendState.CUT
    assert reading.last_amount == 0.44
    assert reading.previous_amount == 0.50
    assert reading.cut_pct == pytest.approx(12.0)


def test_exactly_ninety_percent_is_not_a_cut() -> None:
    dividends = quarterly(date(2024, 12, 1), [0.50, 0.50, 0.45])
    assert evaluate_dividends(dividends, [], D).state is DividendState.PAYING


def test_a_raise_is_paying() -> None:
    dividends = quarterly(date(2024, 12, 1), [0.50, 0.50, 0.60])
    assert evaluate_dividends(dividends, [], D).state is DividendState.PAYING


def test_special_more_than_three_times_the_median_of_four_before_is_ignored() -> None:
    # Four regular 0.50, a 2.00 special (> 3 x 0.50), then 0.50 again: no cut from 2.00.
    dividends = quarterly(date(2023, 12, 1), [0.50, 0.50, 0.50, 0.50])
    dividends.append(Dividend(date(2024, 11, 15), 2.00))
    dividends.append(Dividend(date(2025, 3, 3), 0.50))
    reading = evaluate_dividends(dividends, [], D)
    assert reading.specials_ignored == 1
    assert reading.regular_payments == 5
    assert reading.state is DividendState.PAYING
    assert reading.last_amount == reading.previous_amount == 0.50


def test_exactly_three_times_is_regular() -> None:
    dividends = quarterly(date(2024, 3, 1), [0.50, 0.50, 0.50, 0.50, 1.50])
    reading = evaluate_dividends(dividends, [], date(2025, 3, 15))
    assert reading.specials_ignored == 0
    assert reading.last_amount == 1.50


def test_with_fewer_than_four_before_nothing_is_ignored() -> None:
    # Three regular payments, then a 5.00: counted, so the next 0.50 reads as a cut.
    dividends = quarterly(date(2024, 1, 2), [0.50, 0.50, 0.50, 5.00, 0.50])
    reading = evaluate_dividends(dividends, [], dividends[-1].ex_date + timedelta(days=5))
    assert reading.specials_ignored == 0
    assert reading.state is DividendState.CUT


def test_only_a_special_left_in_the_window_is_still_regular() -> None:
    # The four regular payments before the special fell out of the window: nothing before it.
    dividends = quarterly(date(2021, 1, 4), [0.5, 0.5, 0.5, 0.5])
    dividends.append(Dividend(date(2022, 9, 1), 3.0))
    reading = evaluate_dividends(dividends, [], date(2025, 2, 1))
    assert reading.specials_ignored == 0
    assert reading.state is DividendState.SUSPENDED


def test_split_brings_amounts_to_the_as_of_share_basis() -> None:
    # 2-for-1 on 2025-04-15: 0.50 before it is 0.25 per today's share; 0.25 after is no cut.
    split = Split(date(2025, 4, 15), 2.0, 1.0)
    dividends = quarterly(date(2024, 12, 1), [0.50, 0.50, 0.25])
    reading = evaluate_dividends(dividends, [split], D)
    assert reading.state is DividendState.PAYING
    assert reading.previous_amount == 0.25
    unadjusted = evaluate_dividends(dividends, [], D)
    assert unadjusted.state is DividendState.CUT


def test_split_after_as_of_is_not_applied() -> None:
    split = Split(date(2025, 8, 1), 2.0, 1.0)
    dividends = quarterly(date(2024, 12, 1), [0.50, 0.50, 0.50])
    reading = evaluate_dividends(dividends, [split], D)
    assert reading.last_amount == 0.50
    assert reading.state is DividendState.PAYING


@pytest.mark.parametrize(
    ("old", "new", "alerting"),
    [
        ("PAYING", "CUT", True),
        ("PAYING", "SUSPENDED", True),
        ("CUT", "SUSPENDED", True),
        ("NONE", "PAYING", True),
        ("SUSPENDED", "PAYING", True),
        ("SUSPENDED", "CUT", True),
        ("CUT", "PAYING", False),
        ("SUSPENDED", "NONE", False),
        ("PAYING", "NONE", False),
        ("NONE", "CUT", False),
        ("UNKNOWN", "PAYING", False),
        ("PAYING", "UNKNOWN", False),
        ("PAYING", "PAYING", False),
    ],
)
def test_which_transitions_alert(old: str, new: str, alerting: bool) -> None:
    assert dividend.KIND.alerts(old, new) is alerting


def test_cut_and_suspended_point_down_the_rest_are_neutral() -> None:
    arrows = {state: dividend.KIND.arrow(state) for state in DividendState}
    assert arrows == {
        "PAYING": Direction.NEUTRAL,
        "CUT": Direction.DOWN,
        "SUSPENDED": Direction.DOWN,
        "NONE": Direction.NEUTRAL,
        "UNKNOWN": Direction.NEUTRAL,
    }


def test_the_daily_pass_equals_one_evaluation_per_day() -> None:
    # A payer with a special, a 2-for-1 split, a cut and a suspension, day by day over 4 years.
    paid = quarterly(date(2021, 2, 1), [0.4] * 8 + [0.44] * 4)
    paid.append(Dividend(date(2022, 6, 1), 2.0))
    paid += quarterly(date(2024, 2, 5), [0.11, 0.11])  # after the split: 0.22 before it
    split = Split(date(2023, 9, 1), 2.0, 1.0)
    days = [date(2021, 1, 4) + timedelta(days=n) for n in range(0, 4 * 365, 3)]
    history = History(
        as_of=days[-1],
        dates=days,
        closes=[1.0] * len(days),
        timeline=QuarterTimeline([], 45),
        splits=[split],
        series={dividend.NAME: paid},
    )
    params = dividend.DividendParams()
    passed = list(dividend.evaluate_days(history, range(len(days)), params))
    states = [r.state for r in passed]
    assert set(states) >= {"NONE", "PAYING", "CUT", "SUSPENDED"}
    for day, reading in zip(days, passed, strict=True):
        one = evaluate_dividends(paid, [split], day)
        assert reading.state == one.state, day
        if day >= split.ex_date and one.last_amount is not None:
            assert reading.values["dividend_now"] == pytest.approx(one.last_amount)
    assert dividend.evaluate(history, params) == passed[-1]
    never = replace(history, series={})
    assert dividend.evaluate(never, params).state == "UNKNOWN"


def test_amounts_show_cents_or_the_decimals_that_matter() -> None:
    assert [dividend.money(v) for v in (0.5, 0.3258, 0.125, 2.0, None)] == [
        "$0.50",
        "$0.3258",
        "$0.125",
        "$2.00",
        "n/a",
    ]


def test_a_kind_never_stored_before_is_set_silently_then_alerts() -> None:
    # The stock's previous signal predates the dividend kind: its first dividend state (here
    # already CUT) is no news; from a stored PAYING the same evaluation alerts.
    dates, closes, quarters = scenario_series()
    paid = quarterly(date(2023, 3, 1), [0.5, 0.5, 0.5, 0.5, 0.5]) + [Dividend(D2, 0.3)]
    series = EntitySeries(dates, closes, quarters, extra={dividend.NAME: paid})
    params = EvaluationParams()
    before, now = compute_signal(series, D1, params), compute_signal(series, D3, params)
    assert before.state(dividend.KIND) == "PAYING" and now.state(dividend.KIND) == "CUT"
    old = {k.name: str(before.state(k)) for k in KINDS}
    values = {n: v for r in before.readings.values() for n, v in r.values.items()}

    def found(states: dict[str, str]) -> list[str]:
        prev = Previous(D1, states, values)
        texts = transitions(prev, now, lambda k, o, n: explain("ACME", k, o, n, now, prev))
        return [t.alert_type for t in texts if t.alert_type == "dividend_change"]

    without = {k: v for k, v in old.items() if k != dividend.NAME}
    assert found(without) == []
    assert found(old) == ["dividend_change"]
    prev = Previous(D1, old, values)
    (cut,) = [
        t
        for t in transitions(prev, now, lambda k, o, n: explain("ACME", k, o, n, now, prev))
        if t.alert_type == "dividend_change"
    ]
    assert cut.headline == "ACME cut its dividend by 40 %"
    assert (cut.snapshot["dividend_before"], cut.snapshot["dividend_now"]) == (0.5, 0.3)
    assert cut.snapshot["interval_days"] == 91
    assert "dividend $0.50 a share" in cut.before_vs_now
    assert "dividend $0.30 a share" in cut.before_vs_now
