"""The leaf-field fast path answers exactly what graphql-core's own execution answers."""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, date, datetime
from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLEnumType, GraphQLObjectType, GraphQLScalarType
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema_converter import CustomGraphQLEnumType

import web.schema_export
from web.execution import FastLeafExecutionContext, leaf_plan, output_coercer


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def _resolved(value: str) -> asyncio.Future[str]:
    """An awaitable that any number of fields may await."""
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


@strawberry.type
class Item:
    name: str
    count: int | None
    color: Color
    ratio: float | None

    @strawberry.field
    def shout(self) -> str | None:
        return self.name.upper() if isinstance(self.name, str) else None


def _items() -> list[Any]:
    # Strawberry types do not check what they are given: these reach the executor as is.
    return [
        Item(name="ok", count=1, color=Color.RED, ratio=0.5),
        Item(name=None, count=2, color=Color.BLUE, ratio=None),  # type: ignore[arg-type]
        Item(name="bad int", count="x", color=Color.RED, ratio=1.0),  # type: ignore[arg-type]
        Item(name="bad enum", count=3, color="purple", ratio=1.0),  # type: ignore[arg-type]
        Item(name="nan", count=None, color=Color.BLUE, ratio=float("nan")),
        Item(name=_resolved("awaited"), count=4, color=Color.RED, ratio=2.0),  # type: ignore[arg-type]
        Item(name="err", count=ValueError("boom"), color=Color.RED, ratio=2.0),  # type: ignore[arg-type]
        # Values of other types than the shortcut coercers take: graphql-core decides.
        Item(name="big", count=2**31, color=Color.BLUE, ratio=3),
        Item(name="bool", count=True, color="red", ratio=float("inf")),  # type: ignore[arg-type]
        Item(name=7, count=False, color=Color.BLUE, ratio=True),  # type: ignore[arg-type]
    ]


RESOLVER_CALLS: list[str] = []


@strawberry.type
class Holder:
    """Resolver fields whose values the object may hold (as schema.stock.Stock does)."""

    label: str
    preloaded: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def best(self) -> Item | None:
        RESOLVER_CALLS.append(f"best {self.label}")
        return self.preloaded.get("best")

    @strawberry.field
    def total(self) -> int:
        RESOLVER_CALLS.append(f"total {self.label}")
        total: int = self.preloaded.get("total", -1)
        return total

    @strawberry.field
    def required(self) -> Item:
        RESOLVER_CALLS.append(f"required {self.label}")
        item: Item = self.preloaded.get(
            "required", Item(name="x", count=0, color=Color.RED, ratio=None)
        )
        return item


def _holders() -> list[Holder]:
    ok = Item(name="held", count=9, color=Color.BLUE, ratio=1.5)
    return [
        Holder(label="all held", preloaded={"best": ok, "total": 3, "required": ok}),
        Holder(label="held nulls", preloaded={"best": None, "total": None, "required": None}),
        Holder(
            label="bad values",
            preloaded={"best": Item(name=None, count="x", color="purple", ratio=1.0), "total": "x"},  # type: ignore[arg-type]
        ),
        Holder(label="nothing held", preloaded={}),
    ]


@strawberry.type
class Query:
    @strawberry.field
    async def items(self) -> list[Item | None]:
        return _items()

    @strawberry.field
    def holders(self) -> list[Holder | None]:
        return list(_holders())

    @strawberry.field
    def greeting(self, name: str = "you") -> str:
        return f"hi {name}"


QUERY = '{ greeting g2: greeting(name: "x") items { name n2: name count color ratio shout } }'


async def _run(schema: strawberry.Schema) -> tuple[Any, list[Any]]:
    result = await schema.execute(QUERY)
    errors = sorted((dict(e.formatted) for e in result.errors or []), key=str)
    return result.data, errors


async def test_fast_path_answers_like_graphql_core() -> None:
    plain = strawberry.Schema(Query)
    fast = strawberry.Schema(Query, execution_context_class=FastLeafExecutionContext)
    expected, actual = await _run(plain), await _run(fast)
    assert actual == expected
    data, errors = actual
    assert data["items"][0] == {
        "name": "ok", "n2": "ok", "count": 1, "color": "RED", "ratio": 0.5, "shout": "OK"
    }  # fmt: skip
    assert data["items"][5]["name"] == "awaited"
    assert len(errors) >= 5  # null for non-null, bad int, bad enum, NaN, raised value


HOLDERS = "{ holders { label best { name count color } total required { name } } }"


async def test_held_values_answer_like_their_resolvers_without_calling_them() -> None:
    plain = strawberry.Schema(Query)
    fast = strawberry.Schema(Query, execution_context_class=FastLeafExecutionContext)
    RESOLVER_CALLS.clear()
    expected = await plain.execute(HOLDERS)
    called_by_graphql_core = list(RESOLVER_CALLS)
    RESOLVER_CALLS.clear()
    actual = await fast.execute(HOLDERS)
    # Only the fields whose values the object does not hold run their resolvers.
    assert set(RESOLVER_CALLS) < set(called_by_graphql_core)
    # ("bad values" stops at its held non-null `total` error before reaching `required`.)
    assert sorted(RESOLVER_CALLS) == [
        "best nothing held", "required nothing held", "total nothing held"
    ]  # fmt: skip
    assert actual.data == expected.data
    assert sorted(str(e.formatted) for e in actual.errors or []) == sorted(
        str(e.formatted) for e in expected.errors or []
    )
    assert actual.data is not None and actual.data["holders"][0] == {
        "label": "all held",
        "best": {"name": "held", "count": 9, "color": "BLUE"},
        "total": 3,
        "required": {"name": "held"},
    }
    assert len(actual.errors or []) == 3  # a held null for non-null, a null name, a bad int


async def test_middleware_disables_the_fast_path() -> None:
    seen: list[str] = []

    class Spy(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    schema = strawberry.Schema(
        Query, extensions=[Spy], execution_context_class=FastLeafExecutionContext
    )
    await schema.execute("{ items { ratio } }")
    assert seen.count("ratio") == len(_items())


def test_shortcut_coercers_agree_with_each_leaf_types_own_coercion() -> None:
    schema = web.schema_export.schema._schema
    samples: list[Any] = ["text", "", 0, -(2**31), 2**31 - 1, 2**31, 1.5, float("nan"), True]
    samples += [date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4()]
    checked = 0
    for leaf in schema.type_map.values():
        if not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
            continue
        coerce = output_coercer(leaf)
        values = samples + [
            member for value in getattr(leaf, "values", {}).values() for member in [value.value]
        ]
        if isinstance(leaf, CustomGraphQLEnumType):
            values += list(leaf.wrapped_cls)
        for value in values:
            try:
                fast = coerce(value)
            except Exception:  # the fast path then hands the field to graphql-core
                continue
            if fast is Undefined:
                continue
            assert fast == leaf.coerce_output_value(value), (leaf.name, value)
            assert type(fast) is type(leaf.coerce_output_value(value))
            checked += 1
    assert checked > 20


def test_only_plain_leaf_fields_qualify() -> None:
    schema = strawberry.Schema(Query)
    item_type = schema._schema.type_map["Item"]
    assert isinstance(item_type, GraphQLObjectType) and schema._schema.query_type is not None
    item, query = item_type.fields, schema._schema.query_type.fields
    assert leaf_plan(item["name"]) is not None and leaf_plan(item["color"]) is not None
    assert leaf_plan(item["shout"]) is None  # has a resolver
    assert leaf_plan(query["items"]) is None  # not a leaf
    assert leaf_plan(query["greeting"]) is None


async def test_a_long_subscription_keeps_no_memo_per_event() -> None:
    """Each event's field sets are collected anew; memos shared across events would keep them."""
    built: list[FastLeafExecutionContext] = []

    class Recording(FastLeafExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def items(self) -> AsyncGenerator[Item, None]:
            for n in range(200):
                yield Item(name=f"item {n}", count=n, color=Color.RED, ratio=None)

    schema = strawberry.Schema(Query, subscription=Subscription, execution_context_class=Recording)
    stream = await schema.subscribe("subscription { items { name count color shout } }")
    assert not isinstance(stream, ExecutionResult)
    names = [result.data["items"]["name"] async for result in stream if result.data]
    assert len(names) == 200
    (subscription,) = built
    kept = subscription._relevant_sub_fields, subscription._fields_plans
    assert all(len(memo) <= 2 for memo in kept), [len(memo) for memo in kept]
