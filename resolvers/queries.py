"""Query resolvers; the user is always the token's subject."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import strawberry

from resolvers.context import Context, context_of
from schema.alert import (
    Alert,
    AlertConnection,
    AlertStats,
    alert_filter,
    alert_from_row,
    viewer_alert_stats,
    viewer_alerts,
)
from schema.delivery import (
    DeliveryConnection,
    WebhookEndpoint,
    viewer_deliveries,
    viewer_webhooks,
)
from schema.health import Health
from schema.stock import Stock, stock_from_row
from schema.user import User, Watchlist, user_from_row, viewer_watchlist
from services import alerts, cache_versions, entities, health
from services.db import Row
from services.delivery.channels import push
from services.delivery.outbox import DeliveryStatus
from services.delivery.registry import DeliveryChannel
from services.errors import NotFound
from services.ids import parse_owned_id
from services.market.signals.registry import AlertType
from services.tickers import normalize_ticker


async def resolve_me(info: strawberry.Info) -> User:
    return user_from_row(await context_of(info).require_user())


async def resolve_watchlist(info: strawberry.Info) -> Watchlist:
    return await viewer_watchlist(context_of(info))


# Lists whose membership and order depend on every stock's ticker, name and watch count.
STOCK_LIST_SCOPES = (cache_versions.STOCKS, *cache_versions.POPULARITY)


async def resolve_search_stocks(info: strawberry.Info, query: str, limit: int) -> list[Stock]:
    ctx = context_of(info)
    rows = await entities.search(ctx.pool, query, limit)
    ctx.depends_on(STOCK_LIST_SCOPES)
    return _shown_stocks(ctx, rows)


async def resolve_stock(info: strawberry.Info, ticker: str) -> Stock | None:
    ctx = context_of(info)
    row = await entities.get_by_ticker(ctx.pool, normalize_ticker(ticker))
    if row is None:
        ctx.depends_on((cache_versions.STOCKS,))  # until an entity with that ticker appears
        return None
    return _shown_stocks(ctx, [row])[0]


async def resolve_popular_stocks(info: strawberry.Info, limit: int) -> list[Stock]:
    ctx = context_of(info)
    rows = await entities.popular(ctx.pool, limit)
    ctx.depends_on(STOCK_LIST_SCOPES)
    return _shown_stocks(ctx, rows)


def _shown_stocks(ctx: Context, rows: Sequence[Row]) -> list[Stock]:
    ctx.show_stocks(row["entity_id"] for row in rows)
    return [stock_from_row(row, ctx) for row in rows]


async def resolve_alerts(
    info: strawberry.Info,
    *,
    first: int,
    after: str | None,
    alert_type: AlertType | None,
    ticker: str | None,
    unread: bool | None,
) -> AlertConnection:
    return await viewer_alerts(
        context_of(info), first=first, after=after, where=alert_filter(alert_type, ticker, unread)
    )


async def resolve_alert(info: strawberry.Info, alert_id: str) -> Alert | None:
    ctx = context_of(info)
    user_id = await ctx.require_user_id()
    try:
        parsed = parse_owned_id(alert_id, "alert")
    except NotFound:  # malformed: as unknown as another user's id
        return None
    row = await ctx.alert(user_id, parsed)
    return alert_from_row(row, ctx) if row is not None else None


async def resolve_alert_stats(info: strawberry.Info) -> AlertStats:
    return await viewer_alert_stats(context_of(info))


async def resolve_recent_alerts_count(info: strawberry.Info, days: int) -> int:
    ctx = context_of(info)
    return await alerts.recent_count(ctx.pool, await ctx.require_user_id(), days)


async def resolve_health(info: strawberry.Info) -> Health:
    ctx = context_of(info)
    # The same check as GET /api/health, so the two always agree.
    report = await health.check_health(ctx.pool, ctx.object_store)
    # Health declares exactly HealthReport's fields (the schema snapshot pins them).
    return Health(**dataclasses.asdict(report))


async def resolve_webhooks(info: strawberry.Info) -> list[WebhookEndpoint]:
    return await viewer_webhooks(context_of(info))


async def resolve_push_public_key(info: strawberry.Info) -> str:
    return push.application_server_key(context_of(info).settings)


async def resolve_deliveries(
    info: strawberry.Info,
    *,
    first: int,
    after: str | None,
    status: DeliveryStatus | None,
    channel: DeliveryChannel | None,
) -> DeliveryConnection:
    return await viewer_deliveries(
        context_of(info), first=first, after=after, status=status, channel=channel
    )
