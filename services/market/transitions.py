"""Per-watcher decisions: which state changes alert, which update silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from services.market.alert_text import TYPE_FIELDS, AlertText
from services.market.signal import Signal
from services.market.states import UNKNOWN, AlertType


@dataclass(frozen=True)
class Watcher:
    """One user watching an entity, with the flags that gate alerts and the stored states."""

    user_id: UUID
    user_alerts_enabled: bool
    watchlist_alerts_enabled: bool
    alert_types: tuple[str, ...]
    states: dict[str, str | None]
    last_evaluated_as_of: date | None
    # Removed and added again since its states were last set: what changed while the stock
    # was off the watchlist is old news, so the first evaluation after re-adding is silent.
    rewatched: bool = False


@dataclass(frozen=True)
class AlertRow:
    user_id: UUID
    alert_type: str
    previous_state: str
    new_state: str
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    snapshot: dict[str, Any]


@dataclass(frozen=True)
class StateRow:
    user_id: UUID
    valuation_regime: str
    trend_position: str
    fundamental_direction: str


Explainer = Callable[[AlertType, str, str], AlertText]


@dataclass(frozen=True)
class Decisions:
    alerts: list[AlertRow]
    states: list[StateRow]


def decide(watchers: list[Watcher], signal: Signal, as_of: date, explainer: Explainer) -> Decisions:
    """NULL → set silently; a change between known states alerts when enabled.

    A watcher whose state was evaluated for a later date than `as_of` (a back-dated run) is
    left alone, so old dates never alert backwards. A re-added stock's kept states are
    refreshed silently once, like NULL ones: changes from while it was unwatched are old news.
    """
    alerts: list[AlertRow] = []
    states: list[StateRow] = []
    for watcher in watchers:
        if watcher.last_evaluated_as_of is not None and watcher.last_evaluated_as_of > as_of:
            continue
        for alert_type, field in TYPE_FIELDS.items():
            old = None if watcher.rewatched else watcher.states.get(field)
            new = str(getattr(signal, field))
            if old is None or old == new or UNKNOWN in (old, new):
                continue
            if not _alerts_on(watcher, alert_type):
                continue
            text = explainer(alert_type, old, new)
            alerts.append(
                AlertRow(
                    user_id=watcher.user_id,
                    alert_type=str(alert_type),
                    previous_state=old,
                    new_state=new,
                    headline=text.headline,
                    what_changed=text.what_changed,
                    why_it_matters=text.why_it_matters,
                    before_vs_now=text.before_vs_now,
                    what_didnt_change=text.what_didnt_change,
                    snapshot=text.snapshot,
                )
            )
        states.append(
            StateRow(
                watcher.user_id,
                str(signal.valuation_regime),
                str(signal.trend_position),
                str(signal.fundamental_direction),
            )
        )
    return Decisions(alerts, states)


def _alerts_on(watcher: Watcher, alert_type: AlertType) -> bool:
    return (
        watcher.user_alerts_enabled
        and watcher.watchlist_alerts_enabled
        and str(alert_type) in watcher.alert_types
    )
