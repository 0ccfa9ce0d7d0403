"""from_row: the same objects as the classes' own constructors, columns read by name."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import strawberry

from schema.rows import from_row
from schema.stock import BackfillJob, Signal
from services.backfill_queue import BackfillStatus
from services.market.signals.trend import TrendPosition


def test_a_row_builds_what_the_constructor_builds() -> None:
    row: dict[str, Any] = {
        "job_status": "failed",
        "job_priority": 5,
        "job_requested_at": datetime(2026, 1, 2, tzinfo=UTC),
        "job_retry_count": 2,
        "job_error_category": "source unavailable",
        "job_completed_at": None,
        "job_started_at": None,
        "job_next_attempt_at": None,
    }
    built = from_row(BackfillJob, row, "job_")
    assert built == BackfillJob(**{k.removeprefix("job_"): v for k, v in row.items()} | {
        "status": BackfillStatus.FAILED
    })  # fmt: skip
    assert type(built) is BackfillJob and built.status is BackfillStatus.FAILED


def test_given_values_and_fields_without_columns_stay_as_the_class_defines_them() -> None:
    row: dict[str, Any] = dict.fromkeys(
        ("close", "sma200", "valuation_metric", "valuation_multiple", "valuation_percentile",
         "eps_ttm")
    ) | {
        "as_of": date(2026, 1, 2),
        "trend_position": "ABOVE_200DMA",
        "valuation_regime": "UNKNOWN",
        "fundamental_direction": "UNKNOWN",
        "computed_at": datetime(2026, 1, 2, tzinfo=UTC),
        "states": '{"dividends": "CUT"}',
    }  # fmt: skip
    signal = from_row(Signal, row, stored=(row, ""))
    assert signal.trend_position is TrendPosition.ABOVE_200DMA and signal.stored == (row, "")
    # The resolver field is still the class's method, not an attribute of the object.
    assert "CUT" in [state.state for state in signal.states()]
    assert "states" not in vars(signal)


def test_a_class_whose_init_does_more_is_called() -> None:
    @strawberry.type
    class Shouted:
        name: str

        def __post_init__(self) -> None:
            self.name = self.name.upper()

    assert from_row(Shouted, {"name": "abc"}).name == "ABC"
