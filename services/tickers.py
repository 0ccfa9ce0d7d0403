"""Ticker normalisation: the one place that decides what a well-formed ticker is."""

from __future__ import annotations

import re

from services.errors import BadUserInput

TICKER_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.$^-]{0,9}$")


def normalize_ticker(raw: str) -> str:
    """Trim and upper-case; raise BadUserInput unless it matches the ticker pattern."""
    if not isinstance(raw, str):
        raise BadUserInput("ticker must be a string")
    ticker = raw.strip().upper()
    # `str.upper` maps some non-ASCII letters to ASCII (e.g. 'ı' → 'I'); only ASCII input counts.
    if not raw.strip().isascii() or not TICKER_PATTERN.fullmatch(ticker):
        shown = raw if len(raw) <= 20 else raw[:20] + "…"
        raise BadUserInput(
            f"invalid ticker {shown!r}: use 1-10 characters A-Z, 0-9, '.', '$', '^' or '-', "
            "starting with a letter or digit"
        )
    return ticker
