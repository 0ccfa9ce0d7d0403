"""A small in-process LRU map whose entries expire: bounded in size and in age."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `maxsize` entries (least recently used evicted first), each until its deadline."""

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.time) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if self.clock() >= deadline:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, deadline: float) -> None:
        """Keep `value` until `deadline` (on `clock`); a deadline already past stores nothing."""
        if self.clock() >= deadline:
            self._entries.pop(key, None)
            return
        self._entries[key] = (deadline, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget `key` if present."""
        self._entries.pop(key, None)
