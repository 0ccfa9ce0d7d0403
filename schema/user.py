"""GraphQL User and the watchlist, built from rows; the user's nested lists load lazily."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.alert import (
    ALERTS_PAGE_SIZE,
    AlertConnection,
    AlertStats,
    alert_filter,
    viewer_alert_stats,
    viewer_alerts,
)
from schema.context import FieldContext, field_context
from schema.delivery import WebhookEndpoint, viewer_webhooks
from schema.push import PushSubscription, viewer_push_subscriptions
from schema.rows import from_row
from schema.stock import SignalState, Stock, signal_states, stock_from_row
from services.db import Row
from services.delivery.outbox import EmailDigest
from services.market.signals import dividend, fundamentals, trend, valuation
from services.market.signals.fundamentals import FundamentalDirection
from services.market.signals.kind import UNKNOWN, Direction
from services.market.signals.registry import AlertType
from services.market.signals.trend import TrendPosition
from services.market.signals.valuation import ValuationRegime
from services.signal_store import states_of
from services.users import InvestingStyle


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
    # The joined row when the stock has a signal: the generic states are decoded from it only
    # when a field asks (most watchlist queries do not).
    signal_row: strawberry.Private[Row | None]

    @strawberry.field(
        description="The dividend's arrow: DOWN after a cut or a suspension, else NEUTRAL."
    )
    def dividend_state(self) -> Direction:
        return dividend.KIND.arrow(self.stored_states().get(dividend.KIND.name, UNKNOWN))

    @strawberry.field(description="Every signal kind's state on the stock's latest evaluation.")
    def signals(self) -> list[SignalState]:
        return signal_states(self.stored_states())

    def stored_states(self) -> dict[str, str]:
        """The latest signal's states by kind (empty without a signal)."""
        return {} if self.signal_row is None else states_of(self.signal_row, "signal_")


def watchlist_item_from_row(row: Row, ctx: FieldContext) -> WatchlistItem:
    """An item from a watchlists.ITEMS_SQL row: the states are the stock's latest signal's."""
    stock = stock_from_row(row, ctx)
    signal = stock.signal  # built from the row's signal_* columns (None without a signal)
    if signal is None:
        regime = ValuationRegime.UNKNOWN
        position = TrendPosition.UNKNOWN
        direction = FundamentalDirection.UNKNOWN
    else:
        regime = signal.valuation_regime
        position = signal.trend_position
        direction = signal.fundamental_direction
    return WatchlistItem(
        stock=stock,
        added_at=row["added_at"],
        alerts_enabled=row["alerts_enabled"],
        valuation_state=valuation.KIND.arrow(regime),
        trend_state=trend.KIND.arrow(position),
        fundamentals_state=fundamentals.KIND.arrow(direction),
        valuation_regime=regime,
        trend_position=position,
        fundamental_direction=direction,
        last_alert_at=row["last_alert_at"],
        last_evaluated_at=row["last_evaluated_at"],
        signal_row=row if row["signal_as_of"] else None,
    )


@strawberry.type
class Watchlist:
    items: list[WatchlistItem]
    count: int


async def viewer_watchlist(ctx: FieldContext) -> Watchlist:
    """The viewer's watchlist, newest addition first."""
    items = [watchlist_item_from_row(row, ctx) for row in await ctx.watchlist_rows()]
    return Watchlist(items=items, count=len(items))


@strawberry.type
class User:
    id: strawberry.ID
    email: str | None
    investing_style: InvestingStyle | None
    onboarded_at: datetime | None
    alerts_enabled: bool
    alert_types: list[AlertType]
    email_digest: EmailDigest = strawberry.field(
        description="How often alerts are emailed (DAILY by default); OFF sends none."
    )
    created_at: datetime

    @strawberry.field(description="Where alerts are POSTed (Standard Webhooks), oldest first.")
    async def webhooks(self, info: strawberry.Info) -> list[WebhookEndpoint]:
        return await viewer_webhooks(field_context(info))

    @strawberry.field(
        description="Browsers that get alerts as Web Push notifications, oldest first."
    )
    async def push_subscriptions(self, info: strawberry.Info) -> list[PushSubscription]:
        return await viewer_push_subscriptions(field_context(info))

    @strawberry.field
    async def watchlist(self, info: strawberry.Info) -> Watchlist:
        return await viewer_watchlist(field_context(info))

    @strawberry.field
    async def alerts(
        self,
        info: strawberry.Info,
        first: int | None = ALERTS_PAGE_SIZE,
        after: str | None = None,
        type: AlertType | None = None,
        ticker: str | None = None,
        unread: bool | None = None,
    ) -> AlertConnection:
        return await viewer_alerts(
            field_context(info),
            first=ALERTS_PAGE_SIZE if first is None else first,
            after=after,
            where=alert_filter(type, ticker, unread),
        )

    @strawberry.field
    async def alert_stats(self, info: strawberry.Info) -> AlertStats:
        return await viewer_alert_stats(field_context(info))


def user_from_row(row: Row) -> User:
    """A User from a users row."""
    return from_row(
        User,
        row,
        id=strawberry.ID(str(row["id"])),
        alert_types=[AlertType(t) for t in row["alert_types"]],
    )
