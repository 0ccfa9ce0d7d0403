"""A stock's material transitions: which state changes between two evaluations alert.

Decided once per stock, not per watcher. Which watchers receive an alert (their switches,
their alert types, whether they had already seen the previous state) is decided in SQL when
the alerts are written (services/signal_store.py), set-based over the watchlist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.market.alert_text import TYPE_FIELDS, AlertText, Previous
from services.market.signal import Signal
from services.market.states import UNKNOWN, AlertType


@dataclass(frozen=True)
class Transition:
    """One state change of a stock between its previous signal and this one, with its text."""

    alert_type: str
    previous_state: str
    new_state: str
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    snapshot: dict[str, Any]


Explainer = Callable[[AlertType, str, str], AlertText]


def transitions(
    previous: Previous | None, signal: Signal, explainer: Explainer
) -> list[Transition]:
    """The changes between two known states; none without a previous signal.

    A change to or from UNKNOWN is not material (missing data is not news), and the first
    signal of a stock has nothing to compare with.
    """
    if previous is None:
        return []
    found: list[Transition] = []
    for alert_type, field in TYPE_FIELDS.items():
        old: str | None = getattr(previous, field)
        new = str(getattr(signal, field))
        if old is None or old == new or UNKNOWN in (old, new):
            continue
        text = explainer(alert_type, old, new)
        found.append(
            Transition(
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
    return found
