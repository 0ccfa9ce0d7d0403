"""The one list of signal kinds, and what is derived from it for every layer.

Adding a kind: write its module next to this one and add it to KINDS (docs/extending.md).
The order of KINDS is the order of a stock's alerts of one day and of the generic fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.market.signals import dividend, fundamentals, trend, valuation
from services.market.signals.kind import DetailField, SignalKind, setting

KINDS: tuple[SignalKind, ...] = (valuation.KIND, trend.KIND, fundamentals.KIND, dividend.KIND)

BY_NAME: Mapping[str, SignalKind] = {kind.name: kind for kind in KINDS}
BY_ALERT_TYPE: Mapping[str, SignalKind] = {kind.alert_type: kind for kind in KINDS}


def _detail_fields() -> tuple[DetailField, ...]:
    first: dict[str, DetailField] = {}
    for kind in KINDS:
        for item in kind.detail_fields:
            first.setdefault(item.name, item)
    return tuple(first.values())


# GraphQL AlertDetails: every kind's detail fields, in registry order, each name once.
DETAIL_FIELDS = _detail_fields()
# The alert types' stored values, in registry order (the default of a new user).
ALERT_TYPES: tuple[str, ...] = tuple(kind.alert_type for kind in KINDS)

if TYPE_CHECKING:

    class AlertType(StrEnum):
        """The kinds' alert types; the members are made from KINDS at run time."""

else:
    # GraphQL names are the upper-case stored values (TREND_BREAK = "trend_break").
    AlertType = StrEnum("AlertType", [(kind.graphql_name, kind.alert_type) for kind in KINDS])
    AlertType.__doc__ = "The kinds' alert types; the members are made from KINDS."


def _kind_defaults() -> dict[str, Any]:
    return {kind.name: kind.params_type() for kind in KINDS}


@dataclass(frozen=True)
class EvaluationParams:
    """Every tunable number of the evaluation: each kind's own, and the shared inputs'."""

    kinds: Mapping[str, Any] = field(default_factory=_kind_defaults)
    # A quarter is usable this many days after its period end (valuation and fundamentals).
    availability_lag_days: int = setting(45, "FUNDAMENTALS_LAG_DAYS")

    def of(self, kind: SignalKind) -> Any:
        """The kind's parameters."""
        return self.kinds[kind.name]

    @property
    def history_years(self) -> int:
        """How many years of history the kinds look back (the window an evaluation reads)."""
        return max((getattr(p, "history_years", 0) for p in self.kinds.values()), default=10)
