"""Root Query and Mutation types (docs/api.md); the Subscription root lives with its resolvers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from resolvers import mutations, queries
from schema.alert import ALERTS_PAGE_SIZE, Alert, AlertConnection, AlertStats
from schema.cache_scope import NEVER_CACHED, PER_VIEWER
from schema.delivery import (
    DELIVERIES_PAGE_SIZE,
    Delivery,
    DeliveryConnection,
    WebhookEndpoint,
    WebhookSecret,
)
from schema.health import Health
from schema.inputs import UpdateSettingsInput
from schema.push import PushSubscription
from schema.stock import Stock
from schema.user import User, Watchlist, WatchlistItem
from services.delivery.outbox import DeliveryStatus
from services.delivery.registry import DeliveryChannel
from services.market.signals.registry import AlertType
from services.users import InvestingStyle

# Each argument default is written once: the SDL shows it and an explicit null means it.
STOCK_LIST_SIZE = 10
RECENT_ALERT_DAYS = 7


def _or(value: int | None, default: int) -> int:
    """These arguments are nullable with a default; an explicit null means it."""
    return default if value is None else value


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user.", directives=[PER_VIEWER])
    async def me(self, info: strawberry.Info) -> User:
        return await queries.resolve_me(info)

    @strawberry.field(
        description="The signed-in user's watchlist, newest addition first.",
        directives=[PER_VIEWER],
    )
    async def watchlist(self, info: strawberry.Info) -> Watchlist:
        return await queries.resolve_watchlist(info)

    @strawberry.field(
        description="Exact ticker, then ticker prefix, then name (trigram), then popularity. "
        "Public. An empty query returns []."
    )
    async def search_stocks(
        self, info: strawberry.Info, query: str, limit: int | None = STOCK_LIST_SIZE
    ) -> list[Stock]:
        return await queries.resolve_search_stocks(info, query, _or(limit, STOCK_LIST_SIZE))

    @strawberry.field(description="One stock by ticker, or null when unknown. Public.")
    async def stock(self, info: strawberry.Info, ticker: str) -> Stock | None:
        return await queries.resolve_stock(info, ticker)

    @strawberry.field(description="Most-watched stocks, then by ticker. Public.")
    async def popular_stocks(
        self, info: strawberry.Info, limit: int | None = STOCK_LIST_SIZE
    ) -> list[Stock]:
        return await queries.resolve_popular_stocks(info, _or(limit, STOCK_LIST_SIZE))

    @strawberry.field(
        description="The signed-in user's alerts, newest first.", directives=[PER_VIEWER]
    )
    async def alerts(
        self,
        info: strawberry.Info,
        first: int | None = ALERTS_PAGE_SIZE,
        after: str | None = None,
        type: AlertType | None = None,
        ticker: str | None = None,
        unread: Annotated[
            bool | None,
            strawberry.argument(description="true: only unopened alerts; false: only opened"),
        ] = None,
    ) -> AlertConnection:
        return await queries.resolve_alerts(
            info,
            first=_or(first, ALERTS_PAGE_SIZE),
            after=after,
            alert_type=type,
            ticker=ticker,
            unread=unread,
        )

    @strawberry.field(
        description="One of the signed-in user's alerts; null when not theirs.",
        directives=[PER_VIEWER],
    )
    async def alert(self, info: strawberry.Info, id: strawberry.ID) -> Alert | None:
        return await queries.resolve_alert(info, str(id))

    @strawberry.field(directives=[PER_VIEWER])
    async def alert_stats(self, info: strawberry.Info) -> AlertStats:
        return await queries.resolve_alert_stats(info)

    @strawberry.field(
        description="Alerts sent in the last `days` days (1-365).", directives=[NEVER_CACHED]
    )
    async def recent_alerts_count(
        self, info: strawberry.Info, days: int | None = RECENT_ALERT_DAYS
    ) -> int:
        return await queries.resolve_recent_alerts_count(info, _or(days, RECENT_ALERT_DAYS))

    @strawberry.field(
        description="Liveness of the server and its dependencies. Public.",
        directives=[NEVER_CACHED],
    )
    async def health(self, info: strawberry.Info) -> Health:
        return await queries.resolve_health(info)

    @strawberry.field(
        description="The signed-in user's webhook endpoints, oldest first.",
        directives=[PER_VIEWER],
    )
    async def webhooks(self, info: strawberry.Info) -> list[WebhookEndpoint]:
        return await queries.resolve_webhooks(info)

    @strawberry.field(
        description="The VAPID application server key (base64url, an uncompressed P-256 point) "
        "to pass to pushManager.subscribe. Public."
    )
    async def push_public_key(self, info: strawberry.Info) -> str:
        return await queries.resolve_push_public_key(info)

    @strawberry.field(
        description="The signed-in user's webhook, email and push deliveries, newest first.",
        directives=[PER_VIEWER],
    )
    async def deliveries(
        self,
        info: strawberry.Info,
        first: int | None = DELIVERIES_PAGE_SIZE,
        after: str | None = None,
        status: DeliveryStatus | None = None,
        channel: DeliveryChannel | None = None,
    ) -> DeliveryConnection:
        return await queries.resolve_deliveries(
            info,
            first=_or(first, DELIVERIES_PAGE_SIZE),
            after=after,
            status=status,
            channel=channel,
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Set the investing style and watch 1-50 tickers, all or nothing; re-runnable."
    )
    async def complete_onboarding(
        self, info: strawberry.Info, investing_style: InvestingStyle, tickers: list[str]
    ) -> User:
        return await mutations.resolve_complete_onboarding(info, investing_style, tickers)

    @strawberry.mutation
    async def update_settings(self, info: strawberry.Info, input: UpdateSettingsInput) -> User:
        return await mutations.resolve_update_settings(info, input)

    @strawberry.mutation(
        description="Watch a stock; queues a backfill when it has no data. CONFLICT if watched."
    )
    async def add_stock(self, info: strawberry.Info, ticker: str) -> WatchlistItem:
        return await mutations.resolve_add_stock(info, ticker)

    @strawberry.mutation(description="Stop watching a stock; false when it was not watched.")
    async def remove_stock(self, info: strawberry.Info, ticker: str) -> bool:
        return await mutations.resolve_remove_stock(info, ticker)

    @strawberry.mutation
    async def set_stock_alerts(
        self, info: strawberry.Info, ticker: str, enabled: bool
    ) -> WatchlistItem:
        return await mutations.resolve_set_stock_alerts(info, ticker, enabled)

    @strawberry.mutation(description="Record that an alert was opened; the first time stays.")
    async def mark_alert_opened(self, info: strawberry.Info, id: strawberry.ID) -> Alert:
        return await mutations.resolve_mark_alert_opened(info, str(id))

    @strawberry.mutation(
        description="Add an endpoint (at most 5); the secret is shown here and never again."
    )
    async def create_webhook(
        self, info: strawberry.Info, url: str, description: str | None = None
    ) -> WebhookSecret:
        return await mutations.resolve_create_webhook(info, url, description)

    @strawberry.mutation(description="Remove an endpoint and its deliveries.")
    async def delete_webhook(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        return await mutations.resolve_delete_webhook(info, str(id))

    @strawberry.mutation(description="Switch an endpoint on (resetting its failures) or off.")
    async def set_webhook_enabled(
        self, info: strawberry.Info, id: strawberry.ID, enabled: bool
    ) -> WebhookEndpoint:
        return await mutations.resolve_set_webhook_enabled(info, str(id), enabled)

    @strawberry.mutation(description="A new signing secret; the old one stops verifying at once.")
    async def rotate_webhook_secret(
        self, info: strawberry.Info, id: strawberry.ID
    ) -> WebhookSecret:
        return await mutations.resolve_rotate_webhook_secret(info, str(id))

    @strawberry.mutation(description="Send a webhook.test event now and return the outcome.")
    async def test_webhook(self, info: strawberry.Info, id: strawberry.ID) -> Delivery:
        return await mutations.resolve_test_webhook(info, str(id))

    @strawberry.mutation(description="A FAILED delivery back to PENDING, due now.")
    async def redeliver(self, info: strawberry.Info, id: strawberry.ID) -> Delivery:
        return await mutations.resolve_redeliver(info, str(id))

    @strawberry.mutation(
        description="Subscribe this browser to alerts as Web Push notifications (at most 10); "
        "registering the same endpoint again updates it."
    )
    async def register_push_subscription(
        self,
        info: strawberry.Info,
        endpoint: str,
        p256dh: str,
        auth: str,
        user_agent: str | None = None,
    ) -> PushSubscription:
        return await mutations.resolve_register_push_subscription(
            info, endpoint, p256dh, auth, user_agent
        )

    @strawberry.mutation(description="Remove a push subscription and its deliveries.")
    async def delete_push_subscription(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        return await mutations.resolve_delete_push_subscription(info, str(id))

    @strawberry.mutation(
        description="Mark every unopened alert (sent at or before `before`) opened; how many."
    )
    async def mark_all_alerts_opened(
        self, info: strawberry.Info, before: datetime | None = None
    ) -> int:
        return await mutations.resolve_mark_all_alerts_opened(info, before)
