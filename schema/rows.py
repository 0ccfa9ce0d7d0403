"""Building GraphQL objects from database rows: same-named columns, enums from stored values."""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any, TypeVar

from services.db import Row

T = TypeVar("T")

# (class, column prefix) → (field name, column name, enum class or None) per annotated field.
_FIELDS: dict[tuple[type[Any], str], tuple[tuple[str, str, type[Enum] | None], ...]] = {}


def from_row(cls: type[T], row: Row, prefix: str = "", **given: Any) -> T:
    """A `cls` whose fields not in `given` are `row`'s same-named columns (after `prefix`).

    A field typed as an enum (or enum | None) gets the member whose value the column stores;
    NULL stays None. A prefix reads one table's columns out of a joined row.
    """
    values = dict(given)
    for name, column, enum in _column_fields(cls, prefix):
        if name not in values:
            raw = row[column]
            if enum is not None and raw is not None:
                # The member map is what Enum(value) consults first, without its call overhead.
                raw = enum._value2member_map_.get(raw) or enum(raw)
            values[name] = raw
    return cls(**values)


def _column_fields(cls: type[Any], prefix: str) -> tuple[tuple[str, str, type[Enum] | None], ...]:
    """Each annotated field of `cls` (not resolver methods): its column and enum class, cached."""
    known = _FIELDS.get((cls, prefix))
    if known is None:
        hints = typing.get_type_hints(cls).items()
        known = tuple((name, prefix + name, _enum_of(hint)) for name, hint in hints)
        _FIELDS[(cls, prefix)] = known
    return known


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum class of an `E` or `E | None` hint, else None (lists etc. are not converted)."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None
