"""Alert texts: a headline and four plain-English sections with concrete numbers.

Each kind writes its own headline, what changed and why it matters; the two sections that
look across kinds (before vs now, what didn't change) and the snapshot are assembled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.market.signals.kind import UNKNOWN, Evaluation, Previous, SignalKind
from services.market.signals.registry import KINDS


@dataclass(frozen=True)
class AlertText:
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    snapshot: dict[str, Any]


def explain(
    ticker: str, kind: SignalKind, old: str, new: str, now: Evaluation, prev: Previous | None
) -> AlertText:
    """Texts for one state transition of `ticker` on `now.as_of`."""
    headline, changed, why = kind.explain(ticker, old, new, now, prev)
    return AlertText(
        headline=headline,
        what_changed=changed,
        why_it_matters=why,
        before_vs_now=_before_vs_now(now, prev),
        what_didnt_change=_unchanged(ticker, kind, now, prev),
        snapshot=_snapshot(kind, old, new, now, prev),
    )


def _before_vs_now(now: Evaluation, prev: Previous | None) -> str:
    current = _facts({k.name: now.readings[k.name].values for k in KINDS})
    text = f"Now ({(now.price_date or now.as_of).isoformat()}): {current}."
    if prev is None:
        return text + " No earlier evaluation is stored to compare with."
    then = _facts({k.name: prev.values for k in KINDS})
    return f"Then ({prev.as_of.isoformat()}): {then}. {text}"


def _facts(values: dict[str, Any]) -> str:
    parts: list[str] = []
    for kind in sorted(KINDS, key=lambda k: k.facts_rank):
        parts.extend(kind.facts(values[kind.name]))
    return ", ".join(parts)


def _unchanged(ticker: str, changed: SignalKind, now: Evaluation, prev: Previous | None) -> str:
    facts = []
    for other in KINDS:
        state = str(now.state(other))
        if other is changed or state == UNKNOWN:
            continue
        if prev is not None and prev.states.get(other.name) != state:
            continue
        facts.append(other.steady(state, now))
    if not facts:
        return f"No other signal for {ticker} held steady on this date."
    return " ".join(facts[:2])


def _snapshot(
    kind: SignalKind, old: str, new: str, now: Evaluation, prev: Previous | None
) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "alert_type": kind.alert_type,
        "previous_state": old,
        "new_state": new,
        "as_of": now.as_of.isoformat(),
        "price_date": now.details.get("price_date"),
    }
    for each in KINDS:
        values = now.readings[each.name].values
        for key in each.snapshot_now:
            snapshot[key] = values[key] if key in values else now.details.get(key)
    if prev is not None:
        before: dict[str, Any] = {"as_of": prev.as_of.isoformat()}
        for each in KINDS:
            for key in each.snapshot_before:
                before[key] = prev.values.get(key)
        snapshot["previous"] = before
    return snapshot
