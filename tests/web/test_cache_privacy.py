"""Every field the response cache shares between users resolves without reading the viewer.

The cache shares a query's answer unless the query selects a field marked `@cacheScope`
(web/response_cache.py). This walks the whole Query schema: every type reachable from the
root through unmarked fields, and each unmarked field of it, is executed on real data (a
signed-in viewer who watches a stock with a signal, a backfill job, prices and alerts) under
a context that records any access to the viewer (token, user row, user id). A field that
reads the viewer there must be marked, or its answer would be shared with everyone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    get_named_type,
)
from graphql.pyutils import Undefined

from resolvers.context import Context
from resolvers.root import Query
from schema.cache_scope import CacheScope
from schema.signal_history import SignalHistory, signal_history_of
from services.auth.tokens import TokenVerifier
from services.errors import Unauthenticated
from services.market.evaluation import EntitySeries
from services.market.signal_history import signal_history as market_signal_history
from services.price_chart import DailyBar
from services.settings import Settings
from tests.fixtures.api import ApiData
from web.response_cache import FieldScopes, field_scopes

TICKER = "AAA"
# What a field may read from the context that is the viewer, directly or not.
VIEWER_ACCESS = frozenset(
    {"authorization", "require_user_id", "require_user", "remember_user", "token_expires_at"}
)
# A value for each required argument, by its type's name.
SAMPLES = {
    "String": f'"{TICKER}"',
    "ID": '"00000000-0000-0000-0000-000000000000"',
    "Int": "1",
    "Float": "1.0",
    "Boolean": "true",
    "Date": '"2024-01-02"',
    "DateTime": '"2024-01-02T00:00:00Z"',
}


class RecordingContext(Context):
    """The request context, noting every access to the viewer; prices come from memory."""

    viewer_reads: list[str]

    def __getattribute__(self, name: str) -> Any:
        if name in VIEWER_ACCESS:
            object.__getattribute__(self, "viewer_reads").append(name)
        return object.__getattribute__(self, name)

    async def daily_bars(self, ticker: str, start: dt.date, end: dt.date) -> list[DailyBar]:
        return [DailyBar(end, 1.0, 2.0, 0.5, 1.5, 1000.0, None)]

    async def signal_history(
        self, ticker: str, start: dt.date, end: dt.date, has_prices: bool
    ) -> SignalHistory:
        # A year rising, then a sharp fall: the history holds a trend break, so every field of
        # its transitions is reached.
        days = [end - dt.timedelta(days=n) for n in range(399, -1, -1)]
        closes = [50.0 + n * 0.2 for n in range(340)] + [60.0] * 60
        series = EntitySeries(dates=days, closes=closes)
        result = market_signal_history(ticker, series, days[0], end, Settings().evaluation)
        return signal_history_of(result, days[0], end)


@dataclass
class Walk:
    """What the walk found: unmarked fields that read the viewer, and fields it never reached."""

    reads_viewer: list[str] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    checked: int = 0


def selection(type_: GraphQLObjectType, name: str) -> str:
    """`name(required: sample…)` with a minimal sub-selection for object types."""
    definition = type_.fields[name]
    arguments = []
    for argument_name, argument in definition.args.items():
        if isinstance(argument.type, GraphQLNonNull) and argument.default_value is Undefined:
            named = get_named_type(argument.type)
            if isinstance(named, GraphQLEnumType):
                value = next(iter(named.values))
            else:
                value = SAMPLES[named.name]  # a new required argument type: add a sample
            arguments.append(f"{argument_name}: {value}")
    text = name + (f"({', '.join(arguments)})" if arguments else "")
    return text


def document(path: list[str], leaf: str, leaf_type: GraphQLNamedType) -> str:
    inner = leaf + (" { __typename }" if isinstance(leaf_type, GraphQLObjectType) else "")
    for step in reversed(path):
        inner = f"{step} {{ {inner} }}"
    return "{ " + inner + " }"


def reached(data: Any, keys: list[str]) -> bool:
    """Whether the answer holds a value at every step (the first element of lists)."""
    for key in keys:
        if isinstance(data, list):
            if not data:
                return False
            data = data[0]
        if not isinstance(data, dict) or data.get(key) is None:
            return False
        data = data[key]
    return not (isinstance(data, list) and not data)


async def walk_public_fields(
    schema: strawberry.Schema,
    scopes: FieldScopes,
    make_context: Callable[[], RecordingContext],
) -> Walk:
    """Execute every unmarked field reachable from Query through unmarked fields."""
    readable: GraphQLSchema = build_schema(schema.as_str())
    root = readable.query_type
    assert root is not None
    found = Walk()
    pending: list[tuple[GraphQLObjectType, list[str], bool]] = [(root, [], False)]
    seen = {root.name}
    while pending:
        parent, path, prefix_reads = pending.pop(0)
        for name in sorted(parent.fields):
            if (parent.name, name) in scopes:
                continue  # marked: never shared, and what lies below is not either
            step = selection(parent, name)
            field_type = get_named_type(parent.fields[name].type)
            context = make_context()
            result = await schema.execute(document(path, step, field_type), context_value=context)
            where = f"{parent.name}.{name}"
            found.checked += 1
            if result.errors:
                found.errors.append(f"{where}: {result.errors[0].message}")
                continue
            reads = bool(context.viewer_reads)
            if reads and not prefix_reads:
                found.reads_viewer.append(where)
            if not isinstance(field_type, GraphQLObjectType):
                continue  # a leaf: it ran, null or not, as its parent was reached
            if not reached(result.data, [p.split("(")[0] for p in path] + [name]):
                found.unreached.append(where)  # nothing below it could be walked
                continue
            if field_type.name not in seen:
                seen.add(field_type.name)
                pending.append((field_type, [*path, step], reads or prefix_reads))
    return found


@pytest.fixture
async def make_context(
    pool: asyncpg.Pool,
    api_data: ApiData,
    settings: Settings,
    make_token: Callable[..., str],
) -> Callable[[], RecordingContext]:
    """A signed-in viewer who watches TICKER, which has a signal, a job, prices and alerts."""
    viewer = await api_data.user(email="viewer@example.com")
    entity = await api_data.entity(TICKER, "Triple A", has_price_data=True)
    await api_data.watch(viewer, entity)
    await api_data.signal(entity, dt.date(2024, 1, 2))
    await api_data.job(TICKER, "completed")
    await api_data.alert(viewer, entity)
    token = make_token(sub=viewer, email="viewer@example.com")
    verifier = TokenVerifier(settings)

    def make() -> RecordingContext:
        context = RecordingContext(
            pool=pool, settings=settings, verifier=verifier, authorization=f"Bearer {token}"
        )
        context.viewer_reads = []
        return context

    return make


def query_schema() -> strawberry.Schema:
    """The API's Query root, executed by plain graphql-core: every resolver runs."""
    return strawberry.Schema(query=Query)


async def test_fields_shared_between_users_do_not_read_the_viewer(
    make_context: Callable[[], RecordingContext],
) -> None:
    schema = query_schema()
    walk = await walk_public_fields(
        schema, field_scopes(build_schema(schema.as_str())), make_context
    )
    assert walk.errors == []
    assert walk.unreached == []  # the data reaches every field, so each one really ran
    assert walk.checked >= 40  # Query, Stock, Signal, BackfillJob, PricePoint: 46 today
    assert walk.reads_viewer == [], (
        "these fields read the signed-in user but are shared by the response cache: "
        "declare them with directives=[PER_VIEWER] (schema/cache_scope.py)"
    )


async def test_the_walk_finds_a_viewer_field_whose_marker_is_missing(
    make_context: Callable[[], RecordingContext],
) -> None:
    """Regression guard for the walk itself: without Stock.myAlerts' marker it names it."""
    schema = query_schema()
    scopes = field_scopes(build_schema(schema.as_str()))
    assert scopes.pop(("Stock", "myAlerts")) is CacheScope.VIEWER
    walk = await walk_public_fields(schema, scopes, make_context)
    assert walk.reads_viewer == ["Stock.myAlerts"]


@strawberry.type
class Probe:
    @strawberry.field
    async def mine(self, info: strawberry.Info) -> int:
        try:
            await info.context.require_user_id()
        except Unauthenticated:
            return 0  # read, even though there was no viewer
        return 1

    @strawberry.field
    def plain(self) -> int:
        return 1


@strawberry.type
class ProbeQuery:
    @strawberry.field
    def probe(self) -> Probe:
        return Probe()


async def test_a_viewer_field_is_found_without_a_token_too(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Reading the viewer counts even when there is none (a public field answering [])."""

    def make() -> RecordingContext:
        context = RecordingContext(pool=pool, settings=settings, verifier=TokenVerifier(settings))
        context.viewer_reads = []
        return context

    walk = await walk_public_fields(strawberry.Schema(query=ProbeQuery), {}, make)
    assert walk.reads_viewer == ["Probe.mine"]
    assert walk.checked == 3
