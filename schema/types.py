"""GraphQL object types (SPEC §5) and the builders that make them from database rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
import strawberry

from schema.enums import (
    AlertType,
    BackfillStatus,
    DataStatus,
    Direction,
    FundamentalDirection,
    InvestingStyle,
    TrendPosition,
    ValuationRegime,
    fundamentals_arrow,
    trend_arrow,
    valuation_arrow,
)

if TYPE_CHECKING:
    from resolvers.context import Context

# asyncpg records, or plain dicts built from them (e.g. a joined row's `signal_*` columns).
Row = Mapping[str, Any] | asyncpg.Record
T = TypeVar("T")


@strawberry.type
class Health:
    ok: bool
    database: bool
    object_store: bool
    version: str
    pending_backfills: int
    last_evaluation_as_of: date | None


@strawberry.type
class BackfillJob:
    status: BackfillStatus
    priority: int
    requested_at: datetime
    retry_count: int
    error_message: str | None
    completed_at: datetime | None
    started_at: datetime | None
    next_attempt_at: datetime | None


def backfill_job_from_row(row: Row) -> BackfillJob:
    """A BackfillJob from a backfill_queue row."""
    return BackfillJob(
        status=BackfillStatus(row["status"]),
        priority=row["priority"],
        requested_at=row["requested_at"],
        retry_count=row["retry_count"],
        error_message=row["error_message"],
        completed_at=row["completed_at"],
        started_at=row["started_at"],
        next_attempt_at=row["next_attempt_at"],
    )


@strawberry.type
class Signal:
    as_of: date
    close: float | None
    sma200: float | None
    trend_position: TrendPosition
    valuation_metric: str | None = strawberry.field(
        description='"EV/EBITDA", "EV/SALES" or null when the valuation is UNKNOWN'
    )
    valuation_multiple: float | None
    valuation_percentile: float | None
    valuation_regime: ValuationRegime
    eps_ttm: float | None
    fundamental_direction: FundamentalDirection
    computed_at: datetime


def signal_from_row(row: Row) -> Signal:
    """A Signal from an entity_signals row."""
    return Signal(
        as_of=row["as_of"],
        close=row["close"],
        sma200=row["sma200"],
        trend_position=TrendPosition(row["trend_position"]),
        valuation_metric=row["valuation_metric"],
        valuation_multiple=row["valuation_multiple"],
        valuation_percentile=row["valuation_percentile"],
        valuation_regime=ValuationRegime(row["valuation_regime"]),
        eps_ttm=row["eps_ttm"],
        fundamental_direction=FundamentalDirection(row["fundamental_direction"]),
        computed_at=row["computed_at"],
    )


@strawberry.type
class PricePoint:
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float
    sma200: float | None


@strawberry.type
class Stock:
    entity_id: strawberry.Private[UUID]
    ticker: str
    name: str | None
    sector: str | None
    exchange: str | None
    is_etf: bool
    data_status: DataStatus
    has_price_data: bool
    has_fundamental_data: bool
    price_data_min_date: date | None
    price_data_max_date: date | None
    fundamental_data_min_date: date | None
    fundamental_data_max_date: date | None
    last_data_update: datetime | None

    # Values the query that built this Stock already fetched ("watcher_count", "signal",
    # "backfill"); a known value resolves synchronously, anything else via a DataLoader.
    preloaded: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="How many watchlists hold this stock.")
    def watcher_count(self, info: strawberry.Info) -> int:
        if "watcher_count" in self.preloaded:
            count: int = self.preloaded["watcher_count"]
            return count
        ctx: Context = info.context
        return _deferred(ctx.loaders.watcher_count_by_entity_id.load(self.entity_id))

    @strawberry.field(description="The newest backfill job for this ticker, if any.")
    def backfill(self, info: strawberry.Info) -> BackfillJob | None:
        if "backfill" in self.preloaded:
            return _optional(backfill_job_from_row, self.preloaded["backfill"])
        ctx: Context = info.context
        return _deferred(
            _load_then(ctx.loaders.backfill_job_by_ticker.load(self.ticker), backfill_job_from_row)
        )

    @strawberry.field(description="The latest evaluation, or null before the first one.")
    def signal(self, info: strawberry.Info) -> Signal | None:
        if "signal" in self.preloaded:
            return _optional(signal_from_row, self.preloaded["signal"])
        ctx: Context = info.context
        return _deferred(
            _load_then(ctx.loaders.signal_by_entity_id.load(self.entity_id), signal_from_row)
        )

    @strawberry.field(
        description="Daily bars in [from, to] (default: the last 365 days; at most 10 years)."
    )
    async def prices(
        self,
        info: strawberry.Info,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
    ) -> list[PricePoint]:
        # Imported here: resolvers import this module, so a top-level import would be a cycle.
        from resolvers.prices import load_price_points, price_window

        start, end = price_window(from_, to)
        if not self.has_price_data:
            return []
        return await load_price_points(info, self.ticker, start, end)


def _optional(build: Callable[[Row], T], row: Row | None) -> T | None:
    return build(row) if row is not None else None


async def _load_then(pending: Awaitable[Row | None], build: Callable[[Row], T]) -> T | None:
    return _optional(build, await pending)


def _deferred(awaitable: Awaitable[Any]) -> Any:
    """Hand graphql-core an awaitable from a sync resolver; it awaits it (only when needed)."""
    return awaitable


def _prefixed(row: Row, prefix: str, marker: str) -> Row | None:
    """The `prefix*` columns of a joined row, unprefixed; None when `marker` is NULL."""
    if row[prefix + marker] is None:
        return None
    return {key.removeprefix(prefix): row[key] for key in row.keys() if key.startswith(prefix)}


def _preloaded(row: Row) -> dict[str, Any]:
    """What a row already carries beyond the entity: watcher count, signal_*, job_* columns."""
    keys = set(row.keys())
    known: dict[str, Any] = {}
    if "watcher_count" in keys:
        known["watcher_count"] = row["watcher_count"]
    if "signal_as_of" in keys:
        known["signal"] = _prefixed(row, "signal_", "as_of")
    if "job_status" in keys:
        known["backfill"] = _prefixed(row, "job_", "status")
    return known


def stock_from_row(row: Row) -> Stock:
    """A Stock from any row carrying the entity columns (entity id as `entity_id`)."""
    return Stock(
        preloaded=_preloaded(row),
        entity_id=row["entity_id"],
        ticker=row["ticker"],
        name=row["name"],
        sector=row["sector"],
        exchange=row["exchange"],
        is_etf=row["is_etf"],
        data_status=DataStatus(row["data_status"]),
        has_price_data=row["has_price_data"],
        has_fundamental_data=row["has_fundamental_data"],
        price_data_min_date=row["price_data_min_date"],
        price_data_max_date=row["price_data_max_date"],
        fundamental_data_min_date=row["fundamental_data_min_date"],
        fundamental_data_max_date=row["fundamental_data_max_date"],
        last_data_update=row["last_data_update"],
    )


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
    return Alert(
        id=strawberry.ID(str(row["id"])),
        type=AlertType(row["alert_type"]),
        stock=stock_from_row(row),
        as_of=row["as_of"],
        previous_state=row["previous_state"],
        new_state=row["new_state"],
        headline=row["headline"],
        what_changed=row["what_changed"],
        why_it_matters=row["why_it_matters"],
        before_vs_now=row["before_vs_now"],
        what_didnt_change=row["what_didnt_change"],
        created_at=row["sent_at"],
        opened_at=row["opened_at"],
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
    style = row["investing_style"]
    return User(
        id=strawberry.ID(str(row["id"])),
        email=row["email"],
        investing_style=InvestingStyle(style) if style else None,
        onboarded_at=row["onboarded_at"],
        alerts_enabled=row["alerts_enabled"],
        alert_types=[AlertType(t) for t in row["alert_types"]],
        created_at=row["created_at"],
    )
