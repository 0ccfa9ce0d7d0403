"""GraphQL Stock and what hangs off it (signal, backfill job, prices), built from rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar
from uuid import UUID

import strawberry

from schema.cache_scope import PER_VIEWER, PER_WATCHER_COUNT
from schema.context import FieldContext, field_context
from schema.rows import from_row
from services.backfill_queue import BackfillStatus
from services.db import Row
from services.entities import DataStatus
from services.market.signals.fundamentals import FundamentalDirection
from services.market.signals.kind import UNKNOWN, Direction
from services.market.signals.registry import KINDS, AlertType
from services.market.signals.trend import TrendPosition
from services.market.signals.valuation import ValuationRegime
from services.price_chart import DailyBar, price_window
from services.signal_history import history_window
from services.signal_store import states_of

if TYPE_CHECKING:
    from schema.alert import Alert
    from schema.signal_history import SignalHistory

T = TypeVar("T")
# A column the row does not carry (NULL is a value: no signal yet, no job).
ABSENT = object()
# The default page size of `Stock.myAlerts(first:)`.
MY_ALERTS_PAGE_SIZE = 10


@strawberry.type
class BackfillJob:
    status: BackfillStatus
    priority: int
    requested_at: datetime
    retry_count: int
    # The category only: the source's raw text can carry whatever a remote server answered.
    error_category: str | None = strawberry.field(
        name="errorMessage",
        description=(
            "Why the job failed or is being retried: source unavailable, no data at source, "
            "rejected by source or internal error"
        ),
    )
    completed_at: datetime | None
    started_at: datetime | None
    next_attempt_at: datetime | None


def backfill_job_from_row(row: Row) -> BackfillJob:
    """A BackfillJob from a backfill_queue row."""
    return from_row(BackfillJob, row)


@strawberry.type(description="One signal kind's state and its arrow.")
class SignalState:
    kind: AlertType = strawberry.field(description="The kind, named by its alert type.")
    state: str = strawberry.field(description="UNKNOWN when the kind has no state yet.")
    arrow: Direction


def signal_states(states: Mapping[str, str]) -> list[SignalState]:
    """Every registered kind's state, in registry order (UNKNOWN where none is stored)."""
    found: list[SignalState] = []
    for kind in KINDS:
        state = states.get(kind.name, UNKNOWN)
        found.append(
            SignalState(kind=AlertType(kind.alert_type), state=state, arrow=kind.arrow(state))
        )
    return found


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
    # The stored row and its column prefix: `states` decodes them only when asked for.
    stored: strawberry.Private[tuple[Row, str]]

    @strawberry.field(
        description="Every signal kind's state, in a fixed order (new kinds included)."
    )
    def states(self) -> list[SignalState]:
        row, prefix = self.stored
        return signal_states(states_of(row, prefix))


def signal_from_row(row: Row, prefix: str = "") -> Signal:
    """A Signal from an entity_signals row (or a joined row's `prefix`ed columns)."""
    return from_row(Signal, row, prefix, stored=(row, prefix))


@strawberry.type
class PricePoint:
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float
    sma200: float | None


def price_point(bar: DailyBar) -> PricePoint:
    """A PricePoint from a DailyBar (same fields)."""
    return PricePoint(
        date=bar.date,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        sma200=bar.sma200,
    )


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

    # Each of these three holds its value when the query that built the Stock fetched it,
    # else a Lazy load through the request's DataLoader, awaited only if a query selects it.
    watcher_count: int = strawberry.field(
        description="How many watchlists hold this stock.", directives=[PER_WATCHER_COUNT]
    )
    backfill: BackfillJob | None = strawberry.field(
        description="The newest backfill job for this ticker, if any."
    )
    signal: Signal | None = strawberry.field(
        description="The latest evaluation, or null before the first one."
    )

    @strawberry.field(
        description="The signed-in user's newest alerts about this stock; [] without a token.",
        directives=[PER_VIEWER],
    )
    async def my_alerts(
        self, info: strawberry.Info, first: int | None = MY_ALERTS_PAGE_SIZE
    ) -> list[Annotated[Alert, strawberry.lazy("schema.alert")]]:
        size = MY_ALERTS_PAGE_SIZE if first is None else first
        return list(await field_context(info).my_alerts(self.entity_id, size))

    @strawberry.field(
        description="Daily bars in [from, to] (default: the last 365 days; at most 10 years)."
    )
    async def prices(
        self,
        info: strawberry.Info,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
    ) -> list[PricePoint]:
        start, end = price_window(from_, to)
        if not self.has_price_data:
            return []
        bars = await field_context(info).daily_bars(self.ticker, start, end)
        return [price_point(bar) for bar in bars]

    @strawberry.field(
        description="The state changes the daily evaluation would have found on every trading "
        "day of [from, to] (default: the 10 years up to the last price; at most 15 years), "
        "and how often each kind would have alerted."
    )
    async def signal_history(
        self,
        info: strawberry.Info,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
    ) -> Annotated[SignalHistory, strawberry.lazy("schema.signal_history")]:
        latest = self.price_data_max_date or datetime.now(UTC).date()
        start, end = history_window(from_, to, latest)
        context = field_context(info)
        # Computed from the stock's data only: cached until its data (its scope) changes.
        context.show_stocks((self.entity_id,))
        return await context.signal_history(self.ticker, start, end, self.has_price_data)


class Lazy(Generic[T]):
    """A field's value loaded only when the field is executed: graphql-core awaits it then."""

    __slots__ = ("_load",)

    def __init__(self, load: Callable[[], Awaitable[T]]) -> None:
        self._load = load

    def __await__(self) -> Generator[Any, None, T]:
        return self._load().__await__()


async def _load_then(pending: Awaitable[Row | None], build: Callable[[Row], T]) -> T | None:
    row = await pending
    return build(row) if row is not None else None


def stock_from_row(row: Row, ctx: FieldContext) -> Stock:
    """A Stock from any row carrying the entity columns (entity id as `entity_id`).

    A row may also carry the watcher count (`watcher_count`), the latest signal (`signal_*`)
    and the newest backfill job (`job_*`); what it does not carry is loaded if selected.
    """
    entity_id: UUID = row["entity_id"]
    ticker: str = row["ticker"]
    count = row.get("watcher_count", ABSENT)
    if count is ABSENT:
        count = Lazy(lambda: ctx.watcher_count(entity_id))
    signal_as_of = row.get("signal_as_of", ABSENT)
    if signal_as_of is ABSENT:
        signal: Any = Lazy(lambda: _load_then(ctx.latest_signal(entity_id), signal_from_row))
    else:
        signal = None if signal_as_of is None else signal_from_row(row, "signal_")
    job_status = row.get("job_status", ABSENT)
    if job_status is ABSENT:
        job: Any = Lazy(lambda: _load_then(ctx.backfill_job(ticker), backfill_job_from_row))
    else:
        job = None if job_status is None else from_row(BackfillJob, row, "job_")
    return from_row(Stock, row, watcher_count=count, signal=signal, backfill=job)
