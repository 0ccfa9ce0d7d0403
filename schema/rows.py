"""Building GraphQL objects from database rows: same-named columns, enums from stored values."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any, TypeVar

from services.db import Row

T = TypeVar("T")

# (class, column prefix) → (field name, column name, enum class or None) per annotated field.
_FIELDS: dict[tuple[type[Any], str], tuple[tuple[str, str, type[Enum] | None], ...]] = {}
# Classes that from_row builds without calling them (see _init_only_assigns).
_ASSIGNED_BY_INIT: set[type[Any]] = set()


def from_row(cls: type[T], row: Row, prefix: str = "", **given: Any) -> T:
    """A `cls` whose fields not in `given` are `row`'s same-named columns (after `prefix`).

    A field typed as an enum (or enum | None) gets the member whose value the column stores;
    NULL stays None. A prefix reads one table's columns out of a joined row.
    """
    values = given
    for name, column, enum in _column_fields(cls, prefix):
        if name not in values:
            raw = row[column]
            if enum is not None and raw is not None:
                # The member map is what Enum(value) consults first, without its call overhead.
                raw = enum._value2member_map_.get(raw) or enum(raw)
            values[name] = raw
    if cls not in _ASSIGNED_BY_INIT:
        return cls(**values)
    # A dataclass whose __init__ only assigns its fields (checked once per class): the same
    # object, built without the keyword-argument call (~150 objects per watchlist request).
    built: T = object.__new__(cls)
    built.__dict__ = values
    return built


def _column_fields(cls: type[Any], prefix: str) -> tuple[tuple[str, str, type[Enum] | None], ...]:
    """Each annotated field of `cls` (not resolver methods): its column and enum class, cached."""
    known = _FIELDS.get((cls, prefix))
    if known is None:
        hints = typing.get_type_hints(cls).items()
        known = tuple((name, prefix + name, _enum_of(hint)) for name, hint in hints)
        _FIELDS[(cls, prefix)] = known
        if _init_only_assigns(cls, {name for name, _, _ in known}):
            _ASSIGNED_BY_INIT.add(cls)
    return known


def _init_only_assigns(cls: type[Any], names: set[str]) -> bool:
    """Whether `cls(**values)` for exactly these field names only sets them as attributes."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return False
    if cls.__new__ is not object.__new__ or hasattr(cls, "__slots__"):
        return False
    fields = dataclasses.fields(cls)
    if any(not f.init and f.default_factory is not dataclasses.MISSING for f in fields):
        return False  # __init__ would set those too
    return {field.name for field in fields if field.init} == names


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum class of an `E` or `E | None` hint, else None (lists etc. are not converted)."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None
