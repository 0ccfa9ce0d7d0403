"""Per-client query cost budgets: a token bucket per client, bounded in memory, per process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

# Clients tracked at once. A bucket that has refilled is the same as no bucket, so the least
# recently charged are dropped first; a flood of distinct clients costs at most this many.
MAX_CLIENTS = 50_000


class CostBudgets:
    """`per_minute` cost per client, refilled continuously; a charge that does not fit fails."""

    def __init__(
        self,
        per_minute: int,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self.clock = clock
        # client → (tokens left, when they were counted)
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def charge(self, client: Hashable, cost: int) -> int | None:
        """Spend `cost` of `client`'s budget: None when it fits, else seconds until it would."""
        if self.per_minute <= 0:
            return None
        now = self.clock()
        rate = self.per_minute / 60.0
        entry = self._buckets.get(client)
        tokens = float(self.per_minute)
        if entry is not None:
            left, then = entry
            tokens = min(tokens, left + (now - then) * rate)
        # A single operation over the whole budget runs on a full bucket and empties it.
        cost = min(cost, self.per_minute)
        if cost > tokens:
            missing = cost - tokens
            return max(1, math.ceil(missing / rate))
        self._buckets[client] = (tokens - cost, now)
        self._buckets.move_to_end(client)
        self._evict(now, rate)
        return None

    def _evict(self, now: float, rate: float) -> None:
        buckets = self._buckets
        # Refilled buckets (oldest first) are forgotten: they would grant a full budget anyway.
        while buckets:
            client, (left, then) = next(iter(buckets.items()))
            if left + (now - then) * rate < self.per_minute and len(buckets) <= self.max_clients:
                break
            del buckets[client]
