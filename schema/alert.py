"""GraphQL Alert, its keyset connection and the per-user stats, built from rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import strawberry

from schema.context import FieldContext
from schema.stock import Stock, stock_from_row
from services import alert_record
from services.alerts import AlertFilter
from services.db import Row
from services.market.signals.registry import BY_ALERT_TYPE, DETAIL_FIELDS, AlertType
from services.tickers import normalize_ticker

# The one default page size of every `alerts(first:)` argument.
ALERTS_PAGE_SIZE = 20


def alert_filter(
    alert_type: AlertType | None, ticker: str | None, unread: bool | None
) -> AlertFilter:
    """The filter of an `alerts(type, ticker, unread)` field; a malformed ticker is refused."""
    return AlertFilter(
        alert_type=alert_type.value if alert_type is not None else None,
        ticker=normalize_ticker(ticker) if ticker is not None else None,
        unread=unread,
    )


def _details_type() -> type:
    """The AlertDetails class: one nullable field per kinds' detail field (registry order)."""
    namespace: dict[str, Any] = {
        "__annotations__": {item.name: item.type | None for item in DETAIL_FIELDS}
    }
    for item in DETAIL_FIELDS:
        if item.description is not None:
            namespace[item.name] = strawberry.field(description=item.description)
    details = type("AlertDetails", (), namespace)
    return strawberry.type(
        details, description="The numbers behind an alert's text; null where not applicable."
    )


if TYPE_CHECKING:

    class AlertDetails:
        """Made from the registry's detail fields at run time."""

        def __init__(self, **numbers: Any) -> None: ...

else:
    AlertDetails = _details_type()


def alert_details(alert_type: str, snapshot: dict[str, Any] | None) -> AlertDetails:
    """AlertDetails from the snapshot stored with the alert (what its text was written from).

    Each kind names the fields it fills (its `detail_fields`); the others are null.
    """
    now: dict[str, Any] = snapshot if isinstance(snapshot, dict) else {}
    previous = now.get("previous")
    sources: dict[str, dict[str, Any]] = {
        "now": now,
        "before": previous if isinstance(previous, dict) else {},
    }
    values: dict[str, Any] = {item.name: None for item in DETAIL_FIELDS}
    kind = BY_ALERT_TYPE.get(alert_type)
    for item in kind.detail_fields if kind else ():
        values[item.name] = sources[item.source].get(item.key)
    return AlertDetails(**values)


# (attribute, row column, type) of the alert record's fields that Alert shows as they are.
RECORD_FIELDS = alert_record.graphql_fields()


def _alert_type() -> type:
    """The Alert class: its id, type and stock, the record's plain fields, openedAt, details."""
    annotations: dict[str, Any] = {"id": strawberry.ID, "type": AlertType, "stock": Stock}
    annotations |= {attribute: hint for attribute, _, hint in RECORD_FIELDS}
    annotations |= {"opened_at": datetime | None, "details": AlertDetails}
    return strawberry.type(type("Alert", (), {"__annotations__": annotations}))


if TYPE_CHECKING:

    class Alert:
        """Made from the alert record's fields at run time."""

        def __init__(self, **values: Any) -> None: ...

else:
    Alert = _alert_type()


def alert_from_row(row: Row, ctx: FieldContext) -> Alert:
    """An Alert from a services.alerts row (alert columns plus its entity's columns)."""
    return Alert(
        id=strawberry.ID(str(row["id"])),
        type=AlertType(row["alert_type"]),
        stock=stock_from_row(row, ctx),
        **{attribute: row[column] for attribute, column, _ in RECORD_FIELDS},
        opened_at=row["opened_at"],
        details=alert_details(row["alert_type"], row["data_snapshot"]),
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
    ctx: FieldContext, *, first: int, after: str | None, where: AlertFilter
) -> AlertConnection:
    """One page of the viewer's alerts; `totalCount` is counted only when selected."""
    page = await ctx.alert_page(first, after, where)

    async def count_total() -> int:
        return await ctx.alert_count(where)

    return AlertConnection(
        edges=[AlertEdge(cursor=page.cursor_of(r), node=alert_from_row(r, ctx)) for r in page.rows],
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
