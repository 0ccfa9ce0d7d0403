"""The signal registry: one list of kinds, each evaluated by the same code daily and in a pass."""

from __future__ import annotations

import dataclasses

import pytest

from services.market.evaluation import EntitySeries, compute_signal, evaluate_days
from services.market.signals.kind import UNKNOWN, Direction
from services.market.signals.registry import ALERT_TYPES, KINDS, AlertType, EvaluationParams
from tests.fixtures.evaluation import D0, D1, D2, D3, scenario_series

PARAMS = EvaluationParams()


def test_registry_names_each_kind_and_alert_type_once() -> None:
    # The first three in their original order; kinds added later follow (never a fixed list).
    assert [k.name for k in KINDS][:3] == ["valuation", "trend", "fundamentals"]
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert len({k.alert_type for k in KINDS}) == len(KINDS)
    assert [t.value for t in AlertType] == list(ALERT_TYPES)
    assert [t.name for t in AlertType] == [k.alert_type.upper() for k in KINDS]


def test_every_kind_has_unknown_and_a_neutral_arrow_for_it() -> None:
    for kind in KINDS:
        assert UNKNOWN in {s.value for s in kind.states}, kind.name
        assert kind.arrow(UNKNOWN) is Direction.NEUTRAL


def test_unknown_is_silent_and_known_changes_alert_by_default() -> None:
    for kind in KINDS:
        known = [s.value for s in kind.states if s.value != UNKNOWN]
        assert not kind.alerts(UNKNOWN, known[0])
        assert not kind.alerts(known[0], UNKNOWN)
        assert not kind.alerts(known[0], known[0])
        assert kind.alerts(known[0], known[1])


def test_a_pass_over_days_ends_with_what_the_daily_evaluation_gives() -> None:
    dates, closes, quarters = scenario_series()
    series = EntitySeries(dates, closes, quarters)
    for day in (D0, D1, D2, D3):
        window = [d for d in dates if d <= day][-30:]
        last = list(evaluate_days(series, window, PARAMS))[-1]
        daily = compute_signal(series, day, PARAMS)
        assert last.as_of == daily.as_of
        for kind in KINDS:
            assert last.state(kind) is daily.state(kind), (day, kind.name)
            got, want = last.readings[kind.name], daily.readings[kind.name]
            for name, value in want.values.items():
                if isinstance(value, float):
                    assert got.values[name] == pytest.approx(value), name
                else:
                    assert got.values[name] == value, name


def test_a_pass_gives_each_day_the_state_its_own_daily_evaluation_gives() -> None:
    dates, closes, quarters = scenario_series()
    series = EntitySeries(dates, closes, quarters)
    days = [d for d in dates if D0 <= d <= D3][::15]
    passed = list(evaluate_days(series, days, PARAMS))
    assert [e.as_of for e in passed] == days
    for evaluation in passed:
        daily = compute_signal(series, evaluation.as_of, PARAMS)
        for kind in KINDS:
            assert evaluation.state(kind) is daily.state(kind), (evaluation.as_of, kind.name)


def test_parameters_have_one_default_each() -> None:
    params = EvaluationParams()
    trend = params.kinds["trend"]
    assert trend.band == 0.02 and trend.confirm_days == 3
    assert dataclasses.replace(trend, band=0.05).band == 0.05
    assert params.history_years == 10
