"""Per-request DataLoaders: one SQL statement per batch, results in key order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg
from strawberry.dataloader import DataLoader

from services import backfill_queue, entities, signals

Row = Mapping[str, Any] | asyncpg.Record


class WatcherCountByEntityIdLoader(DataLoader[UUID, int]):
    """Number of watchlists holding each entity."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[UUID]) -> list[int]:
        counts = await entities.watcher_counts(self._pool, keys)
        return [counts.get(key, 0) for key in keys]


class SignalByEntityIdLoader(DataLoader[UUID, Row | None]):
    """The latest entity_signals row of each entity (None before its first evaluation)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[UUID]) -> list[Row | None]:
        latest = await signals.latest(self._pool, keys)
        return [latest.get(key) for key in keys]


class BackfillJobByTickerLoader(DataLoader[str, Row | None]):
    """The newest backfill_queue row of each ticker (None when never queued)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[str]) -> list[Row | None]:
        jobs = await backfill_queue.latest_jobs(self._pool, keys)
        return [jobs.get(key) for key in keys]


class Loaders:
    """The loaders of one request (or one subscription operation)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.watcher_count_by_entity_id = WatcherCountByEntityIdLoader(pool)
        self.signal_by_entity_id = SignalByEntityIdLoader(pool)
        self.backfill_job_by_ticker = BackfillJobByTickerLoader(pool)

    def prime_from_stock_rows(self, rows: Sequence[Row]) -> None:
        """Seed watcher counts and signals from rows that already carry them."""
        for row in rows:
            if "watcher_count" in row:
                self.watcher_count_by_entity_id.prime(row["entity_id"], row["watcher_count"])
            if "signal_as_of" in row:
                self.signal_by_entity_id.prime(row["entity_id"], _prefixed_signal(row))


def _prefixed_signal(row: Row) -> Row | None:
    """The `signal_*` columns of a joined row as an entity_signals row, or None."""
    if row["signal_as_of"] is None:
        return None
    return {
        key.removeprefix("signal_"): row[key] for key in row.keys() if key.startswith("signal_")
    }
