"""Building GraphQL objects from database rows: same-named columns, enums from stored values."""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any, TypeVar

from services.db import Row

T = TypeVar("T")

_FIELDS: dict[type[Any], tuple[tuple[str, type[Enum] | None], ...]] = {}


def from_row(cls: type[T], row: Row, **given: Any) -> T:
    """A `cls` whose fields not in `given` are `row`'s same-named columns.

    A field typed as an enum (or enum | None) gets the member whose value the column stores;
    NULL stays None.
    """
    values = dict(given)
    for name, enum in _column_fields(cls):
        if name not in values:
            raw = row[name]
            values[name] = raw if enum is None or raw is None else enum(raw)
    return cls(**values)


def _column_fields(cls: type[Any]) -> tuple[tuple[str, type[Enum] | None], ...]:
    """Each annotated field of `cls` (not resolver methods) with its enum class, cached."""
    known = _FIELDS.get(cls)
    if known is None:
        known = tuple((name, _enum_of(hint)) for name, hint in typing.get_type_hints(cls).items())
        _FIELDS[cls] = known
    return known


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum class of an `E` or `E | None` hint, else None (lists etc. are not converted)."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None
