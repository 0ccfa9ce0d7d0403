"""What a signal kind is: the interface every kind module fills in, and the values it passes.

A kind (valuation, trend, fundamentals, ...) owns its states and arrows, its alert type, its
parameters, its evaluation over a stock's history, its transition rule and its texts. The
rest of the system (storage, alert writing, GraphQL, delivery) loops over the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from services.market.quarters import QuarterTimeline
from services.market.records import Split

UNKNOWN = "UNKNOWN"


class Direction(StrEnum):
    """The arrow the frontend shows for a state."""

    UP = "UP"
    DOWN = "DOWN"
    NEUTRAL = "NEUTRAL"


def setting(default: Any, env: str, minimum: float = 0.0) -> Any:
    """A parameter's one default and the environment variable that overrides it."""
    return field(default=default, metadata={"env": env, "minimum": minimum})


@dataclass(frozen=True)
class History:
    """A stock's inputs up to `as_of`, split-adjusted to as_of's share basis."""

    as_of: date
    dates: Sequence[date]
    closes: Sequence[float]
    timeline: QuarterTimeline
    splits: Sequence[Split]
    # Nothing earlier exists (else the series is a window and a state may be undetermined).
    complete: bool = True
    quarters_complete: bool = True
    # Input series of kinds that need more than prices and quarters, by kind name.
    series: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """One kind's outcome on one day: its state, its numbers and its detail entries.

    `values` are the numbers stored with the signal and quoted by the texts (a previous
    reading's values are what "before" means); `details` go to the signal's details only.
    `determined` is False when a windowed history was too short to fix the state.
    """

    state: StrEnum
    values: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    determined: bool = True


@dataclass(frozen=True)
class Previous:
    """The last stored signal before the as-of day, per-share numbers on as-of's basis."""

    as_of: date
    states: Mapping[str, str]
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Evaluation:
    """Every kind's reading of one stock on `as_of` plus the shared numbers."""

    as_of: date
    price_date: date | None
    readings: Mapping[str, Reading]
    details: dict[str, Any] = field(default_factory=dict)
    # Kind name -> the name its state has as a field (signal.trend_position).
    state_fields: Mapping[str, str] = field(default_factory=dict)

    def state(self, kind: SignalKind) -> StrEnum:
        """The kind's state on as_of."""
        return self.readings[kind.name].state

    def value(self, name: str) -> Any:
        """A number of any kind's reading (None when no kind has it)."""
        for reading in self.readings.values():
            if name in reading.values:
                return reading.values[name]
        return None

    def __getattr__(self, name: str) -> Any:
        # Kind-specific names read as attributes: a kind's state field (signal.trend_position)
        # or a number of its reading (signal.close).
        readings = self.__dict__.get("readings", {})
        fields = self.__dict__.get("state_fields", {})
        for kind_name, reading in readings.items():
            if name == fields.get(kind_name):
                return reading.state
            if name in reading.values:
                return reading.values[name]
        raise AttributeError(name)


@dataclass(frozen=True)
class DetailField:
    """One number of GraphQL `AlertDetails`, read from the alert's stored snapshot."""

    name: str
    type: type
    # "now": the snapshot's top level; "before": its `previous` object.
    source: str
    key: str
    description: str | None = None


Explainer = Callable[[str, str, str, Evaluation, "Previous | None"], tuple[str, str, str]]


@dataclass(frozen=True)
class SignalKind:
    """One signal kind: everything the rest of the system needs to know about it."""

    name: str
    # The value stored in alert_history.alert_type; GraphQL spells it in upper case.
    alert_type: str
    # What emails call the kind ("200-day trend").
    label: str
    states: type[StrEnum]
    arrows: Mapping[str, Direction]
    # The name of the state as a field: entity_signals column (for the first three kinds)
    # and the GraphQL field of `Signal`/`WatchlistItem` that shows it.
    state_field: str
    params_type: type
    # Numbers of the reading that are per share (moved to a later day's share basis).
    per_share: tuple[str, ...]
    evaluate: Callable[[History, Any], Reading]
    # An incremental pass: the readings on dates[i] for each i of `days` (ascending).
    evaluate_days: Callable[[History, Sequence[int], Any], Iterator[Reading]]
    alerts: Callable[[str, str], bool]
    explain: Explainer
    # One sentence saying the kind's state held (the "what didn't change" section).
    steady: Callable[[str, Evaluation], str]
    # Facts for the "before vs now" section from a reading's values; rank orders them.
    facts: Callable[[Mapping[str, Any]], list[str]]
    facts_rank: int
    # Snapshot keys stored with an alert (from values then details), and of the previous.
    snapshot_now: tuple[str, ...]
    snapshot_before: tuple[str, ...]
    detail_fields: tuple[DetailField, ...] = ()

    @property
    def graphql_name(self) -> str:
        return self.alert_type.upper()

    def arrow(self, state: str) -> Direction:
        """The state's arrow; NEUTRAL when the kind names none (UNKNOWN always)."""
        return self.arrows.get(state, Direction.NEUTRAL)


def known_change(old: str, new: str) -> bool:
    """The default transition rule: any change between two known states alerts."""
    return old != new and UNKNOWN not in (old, new)
