"""GraphQL SignalHistory: the state changes the daily evaluation finds over a window."""

from __future__ import annotations

from datetime import date

import strawberry

from schema.alert import AlertDetails, alert_details
from schema.stock import SignalState, signal_states
from services.market.signal_history import HistoryChange, HistoryResult
from services.market.signals.registry import KINDS, AlertType


@strawberry.type(description="One state change the daily evaluation would have found.")
class SignalTransition:
    as_of: date
    kind: AlertType
    previous_state: str
    new_state: str
    alerting: bool = strawberry.field(
        description="Whether watchers would have been alerted (changes to or from UNKNOWN are "
        "silent)."
    )
    headline: str | None = strawberry.field(
        description="The alert's headline (null for a silent change)."
    )
    details: AlertDetails = strawberry.field(
        description="The numbers the alert would quote (null fields for a silent change)."
    )


@strawberry.type(description="How often one kind of signal would have alerted.")
class AlertRate:
    kind: AlertType
    alerts: int
    per_year: float


@strawberry.type(description="Every trading day of a window evaluated by the daily rules.")
class SignalHistory:
    from_: date = strawberry.field(name="from", description="The window's first day as asked.")
    to: date = strawberry.field(description="The window's last day as asked.")
    first_day: date | None = strawberry.field(description="The first trading day evaluated.")
    last_day: date | None = strawberry.field(description="The last trading day evaluated.")
    trading_days: int
    years: float = strawberry.field(description="firstDay to lastDay, in years.")
    states: list[SignalState] = strawberry.field(
        description="Every kind's state on lastDay (what the daily evaluation stores for it)."
    )
    transitions: list[SignalTransition] = strawberry.field(
        description="State changes, oldest first."
    )
    alerts_per_year: list[AlertRate] = strawberry.field(
        description="Alerting changes per year of the days evaluated, one entry per kind."
    )


def signal_history_of(history: HistoryResult, start: date, end: date) -> SignalHistory:
    """The GraphQL view of a computed history for the window [start, end]."""
    return SignalHistory(
        from_=start,
        to=end,
        first_day=history.first_day,
        last_day=history.last_day,
        trading_days=history.trading_days,
        years=history.years,
        states=signal_states(history.final_states),
        transitions=[_transition(c) for c in history.changes],
        alerts_per_year=[
            AlertRate(
                kind=AlertType(kind.alert_type),
                alerts=history.alerts.get(kind.name, 0),
                per_year=history.alerts_per_year(kind),
            )
            for kind in KINDS
        ],
    )


def _transition(change: HistoryChange) -> SignalTransition:
    return SignalTransition(
        as_of=change.as_of,
        kind=AlertType(change.kind.alert_type),
        previous_state=change.previous_state,
        new_state=change.new_state,
        alerting=change.alerting,
        headline=change.headline,
        details=alert_details(change.kind.alert_type, change.snapshot),
    )
