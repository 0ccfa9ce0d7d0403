"""Number formatting shared by the alert texts of every kind."""

from __future__ import annotations

from typing import Any


def money(value: Any) -> str:
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def multiple(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def ordinal(value: float | None) -> str:
    if value is None:
        return "n/a"
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def gap(close: float | None, sma: float | None) -> str:
    if close is None or sma is None or sma == 0:
        return "n/a vs"
    pct = 100.0 * (close - sma) / sma
    return f"{abs(pct):.1f}% {'above' if pct >= 0 else 'below'}"


def change_pct(before: Any, now: float | None) -> str:
    if before is None or now is None or before == 0:
        return "change n/a"
    return f"{100.0 * (now - before) / abs(before):+.1f}%"


def verb(before: float, now: float | None) -> str:
    if now is None or now == before:
        return "held"
    return "fell" if now < before else "rose"
