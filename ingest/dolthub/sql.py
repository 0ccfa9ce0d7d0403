"""Building DoltHub SQL safely: literals from validated values only, identifiers from constants."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def sql_string(value: str) -> str:
    """A MySQL/Dolt string literal: quotes doubled, backslashes escaped, NUL refused."""
    if not isinstance(value, str):
        raise TypeError("sql_string takes a str")
    if "\x00" in value:
        raise ValueError("NUL byte in SQL literal")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def sql_date(value: date) -> str:
    """A date literal from a real `date` object (never from a string)."""
    if not isinstance(value, date):
        raise TypeError("sql_date takes a datetime.date")
    return "'" + value.isoformat()[:10] + "'"


def identifier(name: str) -> str:
    """A back-quoted identifier; only plain lower-case names (all ours are constants)."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f"`{name}`"


def select_sql(
    table: str,
    columns: Sequence[str],
    where: Sequence[str] = (),
    order_by: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> str:
    """`SELECT cols FROM table [WHERE a AND b] [ORDER BY col, …] [LIMIT n]`."""
    parts = ["SELECT", ", ".join(identifier(c) for c in columns), "FROM", identifier(table)]
    if where:
        parts += ["WHERE", " AND ".join(where)]
    if order_by:
        keys = [order_by] if isinstance(order_by, str) else order_by
        parts += ["ORDER BY", ", ".join(identifier(k) for k in keys)]
    if limit is not None:
        parts += ["LIMIT", str(int(limit))]
    return " ".join(parts)


def equals(column: str, literal: str) -> str:
    return f"{identifier(column)} = {literal}"


def compare(column: str, operator: str, literal: str) -> str:
    if operator not in ("=", "<", "<=", ">", ">="):
        raise ValueError(f"unsupported operator {operator!r}")
    return f"{identifier(column)} {operator} {literal}"
