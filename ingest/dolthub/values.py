"""Exact parsing of DoltHub's string values and per-row validation with reject counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar

T = TypeVar("T")

SourceRow = Mapping[str, str | None]

# A date, optionally followed by a midnight time (Dolt renders DATETIME columns that way).
DATE_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T]00:00(?::00(?:\.0+)?)?Z?)?$")
INTEGER_PATTERN = re.compile(r"^[+-]?\d+(?:\.0*)?$")
TRUE_STRINGS = frozenset({"1", "true", "t", "y", "yes"})
FALSE_STRINGS = frozenset({"0", "false", "f", "n", "no", ""})


class InvalidValue(ValueError):
    """One value (and so its row) is unusable; `reason` is the reject-count key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class RejectCounts(Counter[str]):
    """Rejected rows by reason, e.g. {'non_positive_price': 3, 'bad_date': 1}."""

    @property
    def rejected(self) -> int:
        return sum(self.values())

    def describe(self) -> str:
        """'3 rejected (bad_date=1, non_positive_price=2)' or 'none rejected'."""
        if not self.rejected:
            return "none rejected"
        parts = ", ".join(f"{reason}={count}" for reason, count in sorted(self.items()))
        return f"{self.rejected} rejected ({parts})"


def require(row: SourceRow, column: str) -> str:
    """The column's non-null, non-blank string; InvalidValue when missing or NULL."""
    if column not in row:
        raise InvalidValue("missing_column", column)
    value = row[column]
    if value is None:
        raise InvalidValue("null_value", column)
    if not value.strip():
        raise InvalidValue("empty_value", column)
    return value.strip()


def parse_decimal(raw: str | None, column: str = "value") -> Decimal:
    """Exact decimal from a string; rejects NULL, blanks, garbage, NaN and infinities."""
    if raw is None:
        raise InvalidValue("null_value", column)
    text = raw.strip()
    if not text:
        raise InvalidValue("empty_value", column)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidValue("bad_number", f"{column}={raw!r}") from None
    if not value.is_finite():
        raise InvalidValue("non_finite", f"{column}={raw!r}")
    return value


def parse_optional_decimal(raw: str | None, column: str = "value") -> Decimal | None:
    """Like parse_decimal, but NULL means unknown (None) rather than an error."""
    if raw is None:
        return None
    return parse_decimal(raw, column)


def parse_int(raw: str | None, column: str = "value") -> int:
    """Exact integer; accepts '123' and '123.000' (integral decimals), nothing else."""
    if raw is None:
        raise InvalidValue("null_value", column)
    text = raw.strip()
    if not INTEGER_PATTERN.fullmatch(text):
        if not text:
            raise InvalidValue("empty_value", column)
        lowered = text.lower().lstrip("+-")
        reason = "non_finite" if lowered in ("nan", "inf", "infinity") else "bad_number"
        raise InvalidValue(reason, f"{column}={raw!r}")
    return int(text.split(".", 1)[0])


def parse_date(raw: str | None, column: str = "date") -> date:
    """ISO date 'YYYY-MM-DD' (a midnight time suffix is tolerated)."""
    if raw is None:
        raise InvalidValue("null_value", column)
    match = DATE_PATTERN.fullmatch(raw.strip())
    if not match:
        raise InvalidValue("bad_date", f"{column}={raw!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise InvalidValue("bad_date", f"{column}={raw!r}") from None


def parse_bool(raw: str | None, column: str = "value") -> bool:
    """Dolt booleans arrive as '1'/'0' (tinyint) or 'true'/'false'; NULL is false."""
    if raw is None:
        return False
    lowered = raw.strip().lower()
    if lowered in TRUE_STRINGS:
        return True
    if lowered in FALSE_STRINGS:
        return False
    raise InvalidValue("bad_boolean", f"{column}={raw!r}")


@dataclass(frozen=True)
class PriceValues:
    """One validated ohlcv row, exact."""

    date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


PRICE_COLUMNS = ("open", "high", "low", "close")


def price_values(row: SourceRow) -> PriceValues:
    """Validate one ohlcv row: all columns present, prices > 0, high ≥ low, volume ≥ 0."""
    day = parse_date(require(row, "date"), "date")
    prices = {c: parse_decimal(require(row, c), c) for c in PRICE_COLUMNS}
    volume = parse_int(require(row, "volume"), "volume")
    for column, value in prices.items():
        if value <= 0:
            raise InvalidValue("non_positive_price", f"{column}={value}")
    if prices["high"] < prices["low"]:
        raise InvalidValue("high_below_low", f"high={prices['high']} low={prices['low']}")
    if volume < 0:
        raise InvalidValue("negative_volume", f"volume={volume}")
    return PriceValues(day, prices["open"], prices["high"], prices["low"], prices["close"], volume)


def validate_rows(
    rows: Iterable[SourceRow],
    parse_row: Callable[[SourceRow], T],
    counts: RejectCounts | None = None,
) -> tuple[list[T], RejectCounts]:
    """Parse every row; bad rows are counted by reason, never raised."""
    counts = RejectCounts() if counts is None else counts
    good: list[T] = []
    for row in rows:
        try:
            good.append(parse_row(row))
        except InvalidValue as exc:
            counts[exc.reason] += 1
    return good, counts
