"""GraphQL object types (SPEC §5) and the builders that make them from database rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime

import strawberry

from schema.enums import (
    AlertType,
    Direction,
    FundamentalDirection,
    InvestingStyle,
    TrendPosition,
    ValuationRegime,
    fundamentals_arrow,
    trend_arrow,
    valuation_arrow,
)
from schema.rows import from_row

# Stock and its parts live in schema.stock_types; re-exported so schema.types stays the one
# import for every GraphQL object type.
from schema.stock_types import BackfillJob as BackfillJob
from schema.stock_types import PricePoint as PricePoint
from schema.stock_types import Row as Row
from schema.stock_types import Signal as Signal
from schema.stock_types import Stock as Stock
from schema.stock_types import backfill_job_from_row as backfill_job_from_row
from schema.stock_types import signal_from_row as signal_from_row
from schema.stock_types import stock_from_row as stock_from_row


@strawberry.type
class Health:
    ok: bool
    database: bool
    object_store: bool
    version: str
    pending_backfills: int
    last_evaluation_as_of: date | None


@strawberry.type
class WatchlistItem:
    stock: Stock
    added_at: datetime
    alerts_enabled: bool
    valuation_state: Direction
    trend_state: Direction
    fundamentals_state: Direction
    valuation_regime: ValuationRegime
    trend_position: TrendPosition
    fundamental_direction: FundamentalDirection
    last_alert_at: datetime | None
    last_evaluated_at: datetime | None


def watchlist_item_from_row(row: Row) -> WatchlistItem:
    """An item from a watchlists.ITEMS_SQL row; states fall back to the latest signal."""
    regime = ValuationRegime(
        row["last_valuation_regime"] or row["signal_valuation_regime"] or "UNKNOWN"
    )
    trend = TrendPosition(row["last_trend_position"] or row["signal_trend_position"] or "UNKNOWN")
    fundamentals = FundamentalDirection(
        row["last_fundamental_direction"] or row["signal_fundamental_direction"] or "UNKNOWN"
    )
    return WatchlistItem(
        stock=stock_from_row(row),
        added_at=row["added_at"],
        alerts_enabled=row["alerts_enabled"],
        valuation_state=valuation_arrow(regime),
        trend_state=trend_arrow(trend),
        fundamentals_state=fundamentals_arrow(fundamentals),
        valuation_regime=regime,
        trend_position=trend,
        fundamental_direction=fundamentals,
        last_alert_at=row["last_alert_at"],
        last_evaluated_at=row["last_evaluated_at"],
    )


@strawberry.type
class Watchlist:
    items: list[WatchlistItem]
    count: int


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


@strawberry.type
class User:
    id: strawberry.ID
    email: str | None
    investing_style: InvestingStyle | None
    onboarded_at: datetime | None
    alerts_enabled: bool
    alert_types: list[AlertType]
    created_at: datetime

    @strawberry.field
    async def watchlist(self, info: strawberry.Info) -> Watchlist:
        from resolvers.queries import resolve_watchlist

        return await resolve_watchlist(info)

    @strawberry.field
    async def alerts(
        self,
        info: strawberry.Info,
        first: int | None = 20,
        after: str | None = None,
        type: AlertType | None = None,
    ) -> AlertConnection:
        from resolvers.queries import resolve_alerts

        return await resolve_alerts(
            info, first=20 if first is None else first, after=after, alert_type=type
        )

    @strawberry.field
    async def alert_stats(self, info: strawberry.Info) -> AlertStats:
        from resolvers.queries import resolve_alert_stats

        return await resolve_alert_stats(info)


def user_from_row(row: Row) -> User:
    """A User from a users row."""
    return from_row(
        User,
        row,
        id=strawberry.ID(str(row["id"])),
        alert_types=[AlertType(t) for t in row["alert_types"]],
    )
