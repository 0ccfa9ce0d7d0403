"""What the types' own fields read from the request context, as a Protocol.

Fields such as `Stock.signal` or `User.alerts` resolve below the root, so they need the
request's DataLoaders and viewer. They reach them through this Protocol, which the
resolvers' Context implements; the schema never imports the resolvers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from datetime import date
from typing import Any, Protocol
from uuid import UUID

import strawberry

from services.alerts import AlertFilter, AlertTotals
from services.db import Row
from services.pagination import KeysetPage
from services.price_chart import DailyBar


class FieldContext(Protocol):
    """The request context as seen from a type's field."""

    def depends_on(self, scopes: Iterable[str]) -> None:
        """The answer depends on these response-cache scopes (services/cache_versions.py)."""
        ...

    def show_stocks(self, entity_ids: Iterable[UUID]) -> None:
        """The answer shows these stocks (their response-cache scopes)."""
        ...

    def watcher_count(self, entity_id: UUID) -> Awaitable[int]:
        """How many watchlists hold the entity (batched per request)."""
        ...

    def backfill_job(self, ticker: str) -> Awaitable[Row | None]:
        """The ticker's newest backfill_queue row (batched per request)."""
        ...

    def latest_signal(self, entity_id: UUID) -> Awaitable[Row | None]:
        """The entity's newest entity_signals row (batched per request)."""
        ...

    async def daily_bars(self, ticker: str, start: date, end: date) -> list[DailyBar]:
        """The ticker's bars in [start, end] from object storage."""
        ...

    async def signal_history(self, ticker: str, start: date, end: date, has_prices: bool) -> Any:
        """The ticker's SignalHistory over [start, end] (empty without price data)."""
        ...

    async def watchlist_rows(self) -> Sequence[Row]:
        """The viewer's watchlist item rows, newest first."""
        ...

    async def alert_page(self, first: int, after: str | None, where: AlertFilter) -> KeysetPage:
        """One page of the viewer's alerts."""
        ...

    async def alert_count(self, where: AlertFilter) -> int:
        """How many of the viewer's alerts match."""
        ...

    async def my_alerts(self, entity_id: UUID, first: int) -> Sequence[Any]:
        """The viewer's newest alerts of one stock as Alerts (batched); none without a token."""
        ...

    async def alert_stats(self) -> AlertTotals:
        """The viewer's alert totals by type."""
        ...

    def alert(self, user_id: UUID, alert_id: UUID) -> Awaitable[Row | None]:
        """An alert of `user_id` (batched per request); None for another user's id."""
        ...

    def webhook(self, webhook_id: UUID) -> Awaitable[Row | None]:
        """A webhook endpoint by id (batched per request)."""
        ...

    def push_subscription(self, subscription_id: UUID) -> Awaitable[Row | None]:
        """A push subscription by id (batched per request)."""
        ...

    async def webhook_rows(self) -> Sequence[Row]:
        """The viewer's webhook endpoints, oldest first."""
        ...

    async def push_subscription_rows(self) -> Sequence[Row]:
        """The viewer's Web Push subscriptions, oldest first."""
        ...

    async def delivery_page(
        self, first: int, after: str | None, status: str | None, channel: str | None
    ) -> KeysetPage:
        """One page of the viewer's deliveries."""
        ...


def field_context(info: strawberry.Info) -> FieldContext:
    """`info.context`, typed as what fields may use."""
    context: FieldContext = info.context
    return context
