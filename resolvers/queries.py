"""Query resolvers (also behind the matching User fields)."""

from __future__ import annotations

import dataclasses
from typing import cast

import strawberry

from resolvers.context import Context
from schema.enums import AlertType
from schema.types import (
    AlertConnection,
    AlertEdge,
    AlertStats,
    AlertTypeCount,
    Health,
    PageInfo,
    Stock,
    User,
    Watchlist,
    alert_from_row,
    stock_from_row,
    user_from_row,
    watchlist_item_from_row,
)
from services import alerts, entities, health, users, watchlists
from services.tickers import normalize_ticker


def context_of(info: strawberry.Info) -> Context:
    """The request's Context, typed."""
    return cast(Context, info.context)


async def resolve_me(info: strawberry.Info) -> User:
    return user_from_row(await context_of(info).require_user())


async def resolve_watchlist(info: strawberry.Info) -> Watchlist:
    ctx = context_of(info)
    rows = await watchlists.list_items(ctx.pool, await ctx.require_user_id())
    items = [watchlist_item_from_row(row) for row in rows]
    return Watchlist(items=items, count=len(items))


async def resolve_search_stocks(info: strawberry.Info, query: str, limit: int) -> list[Stock]:
    ctx = context_of(info)
    rows = await entities.search(ctx.pool, query, limit)
    return [stock_from_row(row) for row in rows]


async def resolve_stock(info: strawberry.Info, ticker: str) -> Stock | None:
    row = await entities.get_by_ticker(context_of(info).pool, normalize_ticker(ticker))
    return stock_from_row(row) if row is not None else None


async def resolve_popular_stocks(info: strawberry.Info, limit: int) -> list[Stock]:
    ctx = context_of(info)
    rows = await entities.popular(ctx.pool, limit)
    return [stock_from_row(row) for row in rows]


async def resolve_alerts(
    info: strawberry.Info, *, first: int, after: str | None, alert_type: AlertType | None
) -> AlertConnection:
    ctx = context_of(info)
    user_id = await ctx.require_user_id()
    type_value = alert_type.value if alert_type is not None else None
    page = await alerts.list_page(
        ctx.pool, user_id, first=first, after=after, alert_type=type_value
    )

    async def count_total() -> int:
        return await alerts.count(ctx.pool, user_id, type_value)

    return AlertConnection(
        edges=[AlertEdge(cursor=alerts.cursor_of(r), node=alert_from_row(r)) for r in page.rows],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        count_total=count_total,
    )


async def resolve_alert_stats(info: strawberry.Info) -> AlertStats:
    ctx = context_of(info)
    stats = await alerts.stats(ctx.pool, await ctx.require_user_id(), users.ALERT_TYPES)
    return AlertStats(
        total=stats.total,
        opened=stats.opened,
        open_rate=stats.open_rate,
        by_type=[AlertTypeCount(type=AlertType(t), count=n) for t, n in stats.by_type.items()],
    )


async def resolve_recent_alerts_count(info: strawberry.Info, days: int) -> int:
    ctx = context_of(info)
    return await alerts.recent_count(ctx.pool, await ctx.require_user_id(), days)


async def resolve_health(info: strawberry.Info) -> Health:
    ctx = context_of(info)
    # The same check as GET /api/health, so the two always agree.
    report = await health.check_health(ctx.pool, ctx.object_store)
    # Health declares exactly HealthReport's fields (the schema snapshot pins them).
    return Health(**dataclasses.asdict(report))
