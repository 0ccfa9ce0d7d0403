"""A stock's material transitions: which state changes between two evaluations alert.

Decided once per stock, not per watcher, by each kind's rule. Which watchers receive an
alert (their switches, their alert types, whether they had already seen the previous state)
is decided in SQL when the alerts are written (services/signal_store.py), set-based over the
watchlist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.market.explanation import AlertText
from services.market.signals.kind import Evaluation, Previous, SignalKind
from services.market.signals.registry import KINDS


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


Explainer = Callable[[SignalKind, str, str], AlertText]


def transitions(
    previous: Previous | None, evaluation: Evaluation, explainer: Explainer
) -> list[Transition]:
    """The changes each kind's rule makes material; none without a previous signal.

    The first signal of a stock has nothing to compare with; a state never stored before (a
    kind added since) is set silently.
    """
    if previous is None:
        return []
    found: list[Transition] = []
    for kind in KINDS:
        old = previous.states.get(kind.name)
        new = str(evaluation.state(kind))
        if old is None or not kind.alerts(old, new):
            continue
        text = explainer(kind, old, new)
        found.append(
            Transition(
                alert_type=kind.alert_type,
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
