"""GraphQL Alert, its keyset connection and the per-user stats, built from rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime

import strawberry

from schema.context import FieldContext
from schema.rows import from_row
from schema.stock import Stock, stock_from_row
from services.db import Row
from services.market.states import AlertType

# The one default page size of every `alerts(first:)` argument.
ALERTS_PAGE_SIZE = 20


@strawberry.type
class Alert:
    id: strawberry.ID
    type: AlertType
    stock: Stock
    as_of: date
    previous_state: str | None
    new_state: str
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    created_at: datetime
    opened_at: datetime | None


def alert_from_row(row: Row) -> Alert:
    """An Alert from a services.alerts row (alert columns plus its entity's columns)."""
    return from_row(
        Alert,
        row,
        id=strawberry.ID(str(row["id"])),
        type=AlertType(row["alert_type"]),
        stock=stock_from_row(row),
        created_at=row["sent_at"],
    )


@strawberry.type
class AlertEdge:
    cursor: str
    node: Alert


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class AlertConnection:
    edges: list[AlertEdge]
    page_info: PageInfo
    count_total: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="Alerts matching the filter, across all pages.")
    async def total_count(self) -> int:
        # Counted only when asked for: it is a second statement.
        return await self.count_total()


@strawberry.type
class AlertTypeCount:
    type: AlertType
    count: int


@strawberry.type
class AlertStats:
    total: int
    opened: int
    open_rate: float
    by_type: list[AlertTypeCount]


async def viewer_alerts(
    ctx: FieldContext, *, first: int, after: str | None, alert_type: AlertType | None
) -> AlertConnection:
    """One page of the viewer's alerts; `totalCount` is counted only when selected."""
    type_value = alert_type.value if alert_type is not None else None
    page = await ctx.alert_page(first, after, type_value)

    async def count_total() -> int:
        return await ctx.alert_count(type_value)

    return AlertConnection(
        edges=[AlertEdge(cursor=page.cursor_of(r), node=alert_from_row(r)) for r in page.rows],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        count_total=count_total,
    )


async def viewer_alert_stats(ctx: FieldContext) -> AlertStats:
    """The viewer's alert totals, every type listed (0 when none)."""
    totals = await ctx.alert_stats()
    by_type = [AlertTypeCount(type=AlertType(t), count=n) for t, n in totals.by_type.items()]
    return AlertStats(
        total=totals.total,
        opened=totals.opened,
        open_rate=totals.open_rate,
        by_type=by_type,
    )
