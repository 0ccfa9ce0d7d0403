"""Per-request DataLoaders: one SQL statement per batch, results in key order."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from strawberry.dataloader import DataLoader

from services import alerts, backfill_queue, entities, signal_store
from services.db import Row
from services.delivery import endpoints, push_subscriptions


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
        latest = await signal_store.latest(self._pool, keys)
        return [latest.get(key) for key in keys]


class BackfillJobByTickerLoader(DataLoader[str, Row | None]):
    """The newest backfill_queue row of each ticker (None when never queued)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[str]) -> list[Row | None]:
        jobs = await backfill_queue.latest_jobs(self._pool, keys)
        return [jobs.get(key) for key in keys]


class AlertByUserAndIdLoader(DataLoader[tuple[UUID, UUID], Row | None]):
    """Alerts by (owner, id): another user's id loads nothing."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[tuple[UUID, UUID]]) -> list[Row | None]:
        found: dict[tuple[UUID, UUID], Row] = {}
        for user_id in {user for user, _ in keys}:
            ids = [alert_id for user, alert_id in keys if user == user_id]
            for row in await alerts.get_by_ids(self._pool, user_id, ids):
                found[(user_id, row["id"])] = row
        return [found.get(key) for key in keys]


class AlertsByUserEntityAndFirstLoader(DataLoader[tuple[UUID, UUID, int], list[Row]]):
    """A user's newest alerts of each entity: one statement per (user, page size) in a batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[tuple[UUID, UUID, int]]) -> list[list[Row]]:
        found: dict[tuple[UUID, UUID, int], list[Row]] = {}
        for user_id, first in {(user, first) for user, _, first in keys}:
            entities = [entity for user, entity, n in keys if (user, n) == (user_id, first)]
            rows = await alerts.for_entities(self._pool, user_id, entities, first)
            for entity_id in entities:
                found[(user_id, entity_id, first)] = list(rows.get(entity_id, []))
        return [found[key] for key in keys]


class WebhookByIdLoader(DataLoader[UUID, Row | None]):
    """Webhook endpoints by id (ids come from the viewer's own deliveries)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[UUID]) -> list[Row | None]:
        rows = await endpoints.by_ids(self._pool, keys)
        return [rows.get(key) for key in keys]


class PushSubscriptionByIdLoader(DataLoader[UUID, Row | None]):
    """Push subscriptions by id (ids come from the viewer's own deliveries)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(load_fn=self._load)
        self._pool = pool

    async def _load(self, keys: list[UUID]) -> list[Row | None]:
        rows = await push_subscriptions.by_ids(self._pool, keys)
        return [rows.get(key) for key in keys]


class Loaders:
    """The loaders of one request (or one subscription operation)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.watcher_count_by_entity_id = WatcherCountByEntityIdLoader(pool)
        self.signal_by_entity_id = SignalByEntityIdLoader(pool)
        self.backfill_job_by_ticker = BackfillJobByTickerLoader(pool)
        self.alert_by_user_and_id = AlertByUserAndIdLoader(pool)
        self.webhook_by_id = WebhookByIdLoader(pool)
        self.push_subscription_by_id = PushSubscriptionByIdLoader(pool)
        self.alerts_by_user_entity_and_first = AlertsByUserEntityAndFirstLoader(pool)
