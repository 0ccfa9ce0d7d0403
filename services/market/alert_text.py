"""Alert texts: a headline and four plain-English sections with concrete numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from services.market.signal import Signal
from services.market.states import AlertType

TYPE_FIELDS = {
    AlertType.VALUATION_REGIME_CHANGE: "valuation_regime",
    AlertType.TREND_BREAK: "trend_position",
    AlertType.FUNDAMENTAL_INFLECTION: "fundamental_direction",
}
METRIC_NAMES = {"EV/EBITDA": "EV/EBITDA", "EV/SALES": "EV/Sales"}
REGIME_WORDS = {
    "CHEAP": "its historically cheap zone",
    "EXPENSIVE": "its historically expensive zone",
    "NORMAL": "its usual valuation range",
}


@dataclass(frozen=True)
class Previous:
    """The last stored signal before the as-of day, already on the as-of day's share basis."""

    as_of: date
    close: float | None
    sma200: float | None
    trend_position: str
    valuation_metric: str | None
    valuation_multiple: float | None
    valuation_percentile: float | None
    valuation_regime: str
    eps_ttm: float | None
    fundamental_direction: str


@dataclass(frozen=True)
class AlertText:
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    snapshot: dict[str, Any]


def explain(
    ticker: str, alert_type: AlertType, old: str, new: str, now: Signal, prev: Previous | None
) -> AlertText:
    """Texts for one state transition of `ticker` on `now.as_of`."""
    if alert_type is AlertType.VALUATION_REGIME_CHANGE:
        headline, changed, why = _valuation(ticker, old, new, now, prev)
    elif alert_type is AlertType.TREND_BREAK:
        headline, changed, why = _trend(ticker, new, now, prev)
    else:
        headline, changed, why = _fundamentals(ticker, new, now, prev)
    return AlertText(
        headline=headline,
        what_changed=changed,
        why_it_matters=why,
        before_vs_now=_before_vs_now(now, prev),
        what_didnt_change=_unchanged(ticker, alert_type, now, prev),
        snapshot=_snapshot(alert_type, old, new, now, prev),
    )


# --- per type ---------------------------------------------------------------------------


def _valuation(
    ticker: str, old: str, new: str, now: Signal, prev: Previous | None
) -> tuple[str, str, str]:
    if new in ("CHEAP", "EXPENSIVE"):
        headline = f"{ticker} entered {REGIME_WORDS[new]}"
    else:
        headline = f"{ticker} left {REGIME_WORDS[old]}"
    metric = METRIC_NAMES.get(now.valuation_metric or "", "Its valuation multiple")
    current = f"{_multiple(now.valuation_multiple)} ({_ordinal(now.valuation_percentile)} "
    current += "percentile of its 10-year history)"
    if (
        prev
        and prev.valuation_multiple is not None
        and prev.valuation_metric == now.valuation_metric
    ):
        verb = _verb(prev.valuation_multiple, now.valuation_multiple)
        changed = (
            f"{metric} {verb} from {_multiple(prev.valuation_multiple)} "
            f"({_ordinal(prev.valuation_percentile)} percentile on {prev.as_of.isoformat()}) "
            f"to {current}."
        )
    else:
        changed = f"{metric} is now {current}; the regime was {old.lower()} before."
    why = {
        "CHEAP": (
            f"{ticker} is now valued below most of its own past decade. Low multiples often "
            "reflect worries the market already prices in, so it is a cue to check whether the "
            "business has changed or only the price."
        ),
        "EXPENSIVE": (
            f"{ticker} is now valued above most of its own past decade. A high multiple builds "
            "more optimism into the price and leaves less room for disappointment."
        ),
    }.get(
        new,
        f"The valuation is back inside the range {ticker} has usually traded in over 10 years; "
        f"the {'discount' if old == 'CHEAP' else 'premium'} to its own history has faded.",
    )
    return headline, changed, why


def _trend(ticker: str, new: str, now: Signal, prev: Previous | None) -> tuple[str, str, str]:
    below = new == "BELOW_200DMA"
    headline = (
        f"{ticker} broke below its 200-day average"
        if below
        else f"{ticker} moved back above its 200-day average"
    )
    gap = _gap(now.close, now.sma200)
    changed = (
        f"The close of {_money(now.close)} is {gap} its 200-day average of {_money(now.sma200)}"
    )
    if prev and prev.close is not None and prev.sma200 is not None:
        changed += (
            f"; on {prev.as_of.isoformat()} it was {_gap(prev.close, prev.sma200)} "
            f"({_money(prev.close)} vs {_money(prev.sma200)})"
        )
    changed += "."
    side = "below" if below else "above"
    band = 100.0 * float(now.details.get("trend_band", 0.02))
    days = now.details.get("trend_confirm_days", 3)
    why = (
        f"The price has closed {side} its 200-day average by more than {band:g}% on {days} "
        "consecutive trading days, which confirms a change in the longer-term trend rather "
        "than a one-day wobble."
    )
    return headline, changed, why


def _fundamentals(
    ticker: str, new: str, now: Signal, prev: Previous | None
) -> tuple[str, str, str]:
    up = new == "IMPROVING"
    headline = f"{ticker}'s earnings turned {'up' if up else 'down'}"
    year_ago = now.details.get("eps_ttm_year_ago")
    changed = (
        f"Trailing-12-month diluted EPS is {_money(now.eps_ttm)} vs {_money(year_ago)} "
        f"a year earlier ({_change_pct(year_ago, now.eps_ttm)})"
    )
    quarter = now.details.get("latest_quarter_end")
    changed += f", through the quarter ended {quarter}." if quarter else "."
    why = (
        "Earnings per share over the last four quarters are now growing year over year; "
        "the profit behind each share has turned higher."
        if up
        else "Earnings per share over the last four quarters are now shrinking year over "
        "year; the profit behind each share has turned lower."
    )
    return headline, changed, why


# --- shared sections --------------------------------------------------------------------


def _before_vs_now(now: Signal, prev: Previous | None) -> str:
    current = _facts(now.close, now.sma200, now.eps_ttm, now.valuation_multiple)
    text = f"Now ({(now.price_date or now.as_of).isoformat()}): {current}."
    if prev is None:
        return text + " No earlier evaluation is stored to compare with."
    then = _facts(prev.close, prev.sma200, prev.eps_ttm, prev.valuation_multiple)
    return f"Then ({prev.as_of.isoformat()}): {then}. {text}"


def _facts(close: float | None, sma: float | None, eps: float | None, mult: float | None) -> str:
    parts = [f"close {_money(close)}", f"200-day average {_money(sma)}"]
    if close is not None and sma is not None:
        parts[-1] += f" (close {_gap(close, sma)})"
    parts.append(f"EPS (TTM) {_money(eps)}")
    if mult is not None:
        parts.append(f"multiple {_multiple(mult)}")
    return ", ".join(parts)


def _unchanged(ticker: str, changed: AlertType, now: Signal, prev: Previous | None) -> str:
    facts = []
    for other, field in TYPE_FIELDS.items():
        state = str(getattr(now, field))
        if other is changed or state == "UNKNOWN":
            continue
        if prev is not None and getattr(prev, field) != state:
            continue
        facts.append(_steady_fact(other, state, now))
    if not facts:
        return f"No other signal for {ticker} held steady on this date."
    return " ".join(facts[:2])


def _steady_fact(alert_type: AlertType, state: str, now: Signal) -> str:
    if alert_type is AlertType.TREND_BREAK:
        side = "above" if state == "ABOVE_200DMA" else "below"
        return f"The trend is unchanged: still {side} its 200-day average."
    if alert_type is AlertType.FUNDAMENTAL_INFLECTION:
        word = "improving" if state == "IMPROVING" else "deteriorating"
        return f"Fundamentals are unchanged: earnings still {word} (EPS TTM {_money(now.eps_ttm)})."
    zone = {"CHEAP": "cheap zone", "EXPENSIVE": "expensive zone"}.get(state, "usual range")
    return (
        f"Valuation is unchanged: still in its {zone} "
        f"({_ordinal(now.valuation_percentile)} percentile of its 10-year history)."
    )


def _snapshot(
    alert_type: AlertType, old: str, new: str, now: Signal, prev: Previous | None
) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "alert_type": str(alert_type),
        "previous_state": old,
        "new_state": new,
        "as_of": now.as_of.isoformat(),
        "price_date": now.details.get("price_date"),
        "close": now.close,
        "sma200": now.sma200,
        "valuation_metric": now.valuation_metric,
        "valuation_multiple": now.valuation_multiple,
        "valuation_percentile": now.valuation_percentile,
        "eps_ttm": now.eps_ttm,
        "eps_ttm_year_ago": now.details.get("eps_ttm_year_ago"),
    }
    if prev is not None:
        snapshot["previous"] = {
            "as_of": prev.as_of.isoformat(),
            "close": prev.close,
            "sma200": prev.sma200,
            "valuation_multiple": prev.valuation_multiple,
            "valuation_percentile": prev.valuation_percentile,
            "eps_ttm": prev.eps_ttm,
        }
    return snapshot


# --- formatting -------------------------------------------------------------------------


def _money(value: Any) -> str:
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _multiple(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def _ordinal(value: float | None) -> str:
    if value is None:
        return "n/a"
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _gap(close: float | None, sma: float | None) -> str:
    if close is None or sma is None or sma == 0:
        return "n/a vs"
    pct = 100.0 * (close - sma) / sma
    return f"{abs(pct):.1f}% {'above' if pct >= 0 else 'below'}"


def _change_pct(before: Any, now: float | None) -> str:
    if before is None or now is None or before == 0:
        return "change n/a"
    return f"{100.0 * (now - before) / abs(before):+.1f}%"


def _verb(before: float, now: float | None) -> str:
    if now is None or now == before:
        return "held"
    return "fell" if now < before else "rose"
