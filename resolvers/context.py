"""Per-request context: pool, settings, lazily-verified viewer and fresh DataLoaders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any, cast
from uuid import UUID

import asyncpg
import strawberry

from resolvers.loaders import Loaders
from schema.alert import Alert, alert_from_row
from schema.signal_history import SignalHistory, signal_history_of
from services import alerts, cache_versions, price_chart, signal_history, users, watchlists
from services.alerts import AlertFilter, AlertTotals
from services.auth.tokens import Claims, TokenVerifier
from services.db import Row
from services.delivery import endpoints, outbox, push_subscriptions
from services.errors import StorageUnavailable, Unauthenticated
from services.logs import add_log_context
from services.market.signal_history import HistoryResult
from services.market.signals.registry import ALERT_TYPES
from services.pagination import KeysetPage
from services.price_chart import DailyBar
from services.settings import Settings
from services.storage.object_store import InvalidKeyError, ObjectStoreError
from services.storage.parquet import CorruptObjectError

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Built once per HTTP request and once per subscription operation."""

    pool: asyncpg.Pool
    settings: Settings
    verifier: TokenVerifier
    authorization: str | None = None
    request: Any = None
    response: Any = None
    # The WebSocket connection_init payload (Strawberry sets it; subscriptions read the token).
    connection_params: dict[str, Any] | None = None
    # The process's ObjectStore (services.storage.factory), opened once in the app lifespan.
    object_store: Any = None
    # The process's recently-ensured users (one per GraphQL app, web/graphql_app.py); None
    # upserts on every request.
    ensured_users: users.EnsuredUsers | None = None
    # Set by the response cache when the answer may be stored: the scopes it read.
    read_scopes: cache_versions.ReadScopes | None = None
    _claims: Claims | None = field(default=None, init=False)
    _user: asyncpg.Record | None = field(default=None, init=False)
    _user_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @cached_property
    def loaders(self) -> Loaders:
        """This request's DataLoaders, made when a field first needs one (a cache hit never)."""
        return Loaders(self.pool)

    async def require_user_id(self) -> UUID:
        """The authenticated user's id; raises Unauthenticated without a valid bearer token."""
        if self._user is None and self.ensured_users is not None:
            async with self._user_lock:
                claims = await self._verify()
            if self.ensured_users.recently_ensured(claims.sub, claims.email):
                return claims.sub  # its row exists: this process upserted it moments ago
        user = await self.require_user()
        user_id: UUID = user["id"]
        return user_id

    async def require_user(self) -> asyncpg.Record:
        """The viewer's users row, upserted from the token once per request."""
        if self._user is not None:
            return self._user
        # Sibling fields resolve concurrently; the lock keeps it to one verify + upsert.
        async with self._user_lock:
            if self._user is None:
                claims = await self._verify()
                self._user = await users.ensure_user(self.pool, claims.sub, claims.email)
                if self.ensured_users is not None:
                    self.ensured_users.remember(claims.sub, claims.email)
        return self._user

    async def viewer_id_or_none(self) -> UUID | None:
        """The valid token's user id, or None without one (verifies only; no database)."""
        try:
            async with self._user_lock:
                claims = await self._verify()
        except Unauthenticated:
            return None
        return claims.sub

    @property
    def token_expires_at(self) -> float | None:
        """Unix seconds at which the verified token expires (None before verification)."""
        return self._claims.expires_at if self._claims is not None else None

    def remember_user(self, row: asyncpg.Record) -> None:
        """Keep the viewer's row a mutation just returned, so later fields read it."""
        self._user = row

    # --- what the types' fields read (schema.context.FieldContext) ---------------------

    def depends_on(self, scopes: Iterable[str]) -> None:
        if self.read_scopes is not None:
            self.read_scopes.add(scopes)

    def show_stocks(self, entity_ids: Iterable[UUID]) -> None:
        if self.read_scopes is not None:
            self.read_scopes.stocks(entity_ids)

    def watcher_count(self, entity_id: UUID) -> Awaitable[int]:
        return self.loaders.watcher_count_by_entity_id.load(entity_id)

    def backfill_job(self, ticker: str) -> Awaitable[Row | None]:
        return self.loaders.backfill_job_by_ticker.load(ticker)

    def latest_signal(self, entity_id: UUID) -> Awaitable[Row | None]:
        return self.loaders.signal_by_entity_id.load(entity_id)

    async def daily_bars(self, ticker: str, start: date, end: date) -> list[DailyBar]:
        if self.object_store is None:
            return []
        try:
            return await price_chart.daily_bars(
                self.object_store, ticker, start, end, use_history=self.settings.derived_history
            )
        except (InvalidKeyError, CorruptObjectError):
            raise  # a bug or a damaged object, not an outage: masked as INTERNAL and logged
        except ObjectStoreError as exc:
            # The message names the bucket, endpoint and key: for the log, not the client.
            log.warning("prices of %s: object store unavailable: %s", ticker, exc)
            raise StorageUnavailable(
                "price data is unavailable right now; try again shortly"
            ) from exc

    async def signal_history(
        self, ticker: str, start: date, end: date, has_prices: bool
    ) -> SignalHistory:
        history = HistoryResult(None, None, 0)
        if has_prices and self.object_store is not None:
            try:
                history = await signal_history.stock_signal_history(
                    self.object_store,
                    ticker,
                    start,
                    end,
                    self.settings.evaluation,
                    use_history=self.settings.derived_history,
                )
            except (InvalidKeyError, CorruptObjectError):
                raise  # a bug or a damaged object, not an outage: masked as INTERNAL and logged
            except ObjectStoreError as exc:
                log.warning("signal history of %s: object store unavailable: %s", ticker, exc)
                raise StorageUnavailable(
                    "price data is unavailable right now; try again shortly"
                ) from exc
        return signal_history_of(history, start, end)

    async def watchlist_rows(self) -> Sequence[Row]:
        rows = await watchlists.list_items(self.pool, await self.require_user_id())
        self.show_stocks(row["entity_id"] for row in rows)
        return rows

    async def alert_page(self, first: int, after: str | None, where: AlertFilter) -> KeysetPage:
        user_id = await self.require_user_id()
        page = await alerts.list_page(self.pool, user_id, first=first, after=after, where=where)
        self.show_stocks(row["entity_id"] for row in page.rows)
        return page

    async def alert_count(self, where: AlertFilter) -> int:
        return await alerts.count(self.pool, await self.require_user_id(), where)

    async def my_alerts(self, entity_id: UUID, first: int) -> Sequence[Alert]:
        try:
            user_id = await self.require_user_id()
        except Unauthenticated:
            return []  # a public field: without a token there simply are none
        rows = await self.loaders.alerts_by_user_entity_and_first.load((user_id, entity_id, first))
        self.show_stocks(row["entity_id"] for row in rows)
        return [alert_from_row(row, self) for row in rows]

    async def alert_stats(self) -> AlertTotals:
        return await alerts.stats(self.pool, await self.require_user_id(), ALERT_TYPES)

    async def alert(self, user_id: UUID, alert_id: UUID) -> Row | None:
        row = await self.loaders.alert_by_user_and_id.load((user_id, alert_id))
        if row is not None:
            self.show_stocks((row["entity_id"],))
        return row

    def webhook(self, webhook_id: UUID) -> Awaitable[Row | None]:
        return self.loaders.webhook_by_id.load(webhook_id)

    def push_subscription(self, subscription_id: UUID) -> Awaitable[Row | None]:
        return self.loaders.push_subscription_by_id.load(subscription_id)

    async def webhook_rows(self) -> Sequence[Row]:
        return await endpoints.list_for_user(self.pool, await self.require_user_id())

    async def push_subscription_rows(self) -> Sequence[Row]:
        return await push_subscriptions.list_for_user(self.pool, await self.require_user_id())

    async def delivery_page(
        self, first: int, after: str | None, status: str | None, channel: str | None
    ) -> KeysetPage:
        user_id = await self.require_user_id()
        return await outbox.list_page(
            self.pool, user_id, first=first, after=after, status=status, channel=channel
        )

    async def _verify(self) -> Claims:
        if self._claims is None:
            token = bearer_token(self.authorization)
            if token is None:
                raise Unauthenticated("missing bearer token")
            self._claims = await self.verifier.verify(token)
            add_log_context(user_id=self._claims.sub)
        return self._claims


def bearer_token(authorization: str | None) -> str | None:
    """The token from an `Authorization: Bearer …` value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def context_of(info: strawberry.Info) -> Context:
    """The request's Context, typed."""
    return cast(Context, info.context)
