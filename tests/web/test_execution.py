"""The direct execution answers exactly what graphql-core's own execution answers."""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, TypeVar, cast

import strawberry
from graphql import ExecutionResult, GraphQLEnumType, GraphQLScalarType, GraphQLSchema
from graphql.pyutils import Undefined
from strawberry.extensions import ParserCache, SchemaExtension

from resolvers.root import Mutation
from resolvers.root import Query as AppQuery
from resolvers.subscriptions import SharedRender, Subscription
from web.execution import (
    COMPILED_SELECTIONS_KEPT,
    DirectExecutionContext,
    output_coercer,
    plain_fields,
)

T = TypeVar("T")


def direct_schema(query: type, **kwargs: Any) -> strawberry.Schema:
    """A schema executed with the direct path, as web/graphql_app.py builds it."""
    execution_context = DirectExecutionContext.for_schema()
    schema = strawberry.Schema(query, execution_context_class=execution_context, **kwargs)
    execution_context.learn(schema)
    return schema


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def _resolved(value: T) -> asyncio.Future[T]:
    """An awaitable that any number of fields may await."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
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


@strawberry.type
class Query:
    @strawberry.field
    async def items(self) -> list[Item | None]:
        return _items()

    @strawberry.field
    def greeting(self, name: str = "you") -> str:
        return f"hi {name}"


QUERY = '{ greeting g2: greeting(name: "x") items { name shout n2: name count color ratio } }'


async def _run(schema: strawberry.Schema) -> tuple[Any, list[Any]]:
    result = await schema.execute(QUERY)
    errors = sorted((dict(e.formatted) for e in result.errors or []), key=str)
    return result.data, errors


async def test_fast_path_answers_like_graphql_core() -> None:
    plain = strawberry.Schema(Query)
    fast = direct_schema(Query)
    expected, actual = await _run(plain), await _run(fast)
    assert actual == expected
    data, errors = actual
    assert data["items"][0] == {
        "name": "ok", "n2": "ok", "count": 1, "color": "RED", "ratio": 0.5, "shout": "OK"
    }  # fmt: skip
    assert data["items"][5]["name"] == "awaited"
    # Read directly or not, the fields keep the query's order.
    assert [list(item or {}) for item in data["items"]] == [
        list(item or {}) for item in expected[0]["items"]
    ]
    assert list(data["items"][0]) == ["name", "shout", "n2", "count", "color", "ratio"]
    assert len(errors) >= 5  # null for non-null, bad int, bad enum, NaN, raised value


@strawberry.type
class Leaf:
    label: str
    size: int | None


@strawberry.type
class Branch:
    """Plain object and list fields, and resolved ones, holding what a resolver may return."""

    name: str
    leaf: Leaf | None
    required_leaf: Leaf
    leaves: list[Leaf]
    maybe_leaves: list[Leaf | None] | None
    given: strawberry.Private[Any] = None

    @strawberry.field
    def resolved_leaf(self) -> Leaf | None:
        return cast(Leaf | None, self.given)

    @strawberry.field
    def resolved_required(self) -> Leaf:
        return cast(Leaf, self.given)

    @strawberry.field
    async def awaited_leaf(self) -> Leaf | None:
        await asyncio.sleep(0)
        return cast(Leaf | None, self.given)

    @strawberry.field
    def count(self) -> int:
        if isinstance(self.given, Exception):
            raise self.given
        return len(self.leaves)

    @strawberry.field
    def deferred_count(self) -> int:
        return cast(int, _resolved(len(self.leaves)))


def _leaf(label: Any = "a", size: Any = 1) -> Leaf:
    return Leaf(label=label, size=size)


def _branches() -> list[Any]:
    ok, bad = _leaf(), _leaf(label=None)  # a null in a non-null leaf propagates upwards
    return [
        Branch(name="ok", leaf=ok, required_leaf=ok, leaves=[ok, ok], maybe_leaves=[ok, None],
               given=ok),
        Branch(name="nulls", leaf=None, required_leaf=None, leaves=[], maybe_leaves=None,  # type: ignore[arg-type]
               given=None),
        Branch(name="bad leaf", leaf=bad, required_leaf=ok, leaves=[ok, bad],
               maybe_leaves=[bad, ok], given=bad),
        Branch(name="null item", leaf=ok, required_leaf=ok, leaves=[ok, None],  # type: ignore[list-item]
               maybe_leaves=[None], given=ValueError("resolver failed")),
        Branch(name="raised", leaf=ValueError("no leaf"), required_leaf=ok,  # type: ignore[arg-type]
               leaves=[ok, ValueError("no item")], maybe_leaves=(ok,), given=_resolved("x")),  # type: ignore[list-item,arg-type]
        Branch(name="awaited", leaf=_resolved(ok), required_leaf=ok, leaves=(ok,),  # type: ignore[arg-type]
               maybe_leaves=[_resolved(ok), ok], given=_resolved(ok)),  # type: ignore[list-item]
        Branch(name="wrong", leaf="not an object", required_leaf=ok, leaves="no",  # type: ignore[arg-type]
               maybe_leaves=[ok], given=7),
    ]  # fmt: skip


@strawberry.type
class Tree:
    @strawberry.field
    async def branches(self) -> list[Branch | None]:
        return _branches()

    @strawberry.field
    def first(self) -> Branch:
        return cast(Branch, _branches()[0])


TREE_QUERY = """{ branches { name count deferredCount
  leaf { label size } requiredLeaf { label } again: leaf { size }
  leaves { label size } maybeLeaves { label }
  resolvedLeaf { label } resolvedRequired { size } awaitedLeaf { label size } }
  first { leaves { label } resolvedLeaf { size } } }"""


async def _answers(schema: strawberry.Schema, query: str) -> tuple[Any, list[Any]]:
    result = await schema.execute(query)
    errors = sorted((dict(e.formatted) for e in result.errors or []), key=str)
    return result.data, errors


async def test_objects_lists_and_resolved_values_answer_like_graphql_core() -> None:
    expected = await _answers(strawberry.Schema(Tree), TREE_QUERY)
    actual = await _answers(direct_schema(Tree), TREE_QUERY)
    assert actual == expected
    data, errors = actual
    assert data["branches"][0] == {
        "name": "ok", "count": 2, "deferredCount": 2,
        "leaf": {"label": "a", "size": 1}, "requiredLeaf": {"label": "a"}, "again": {"size": 1},
        "leaves": [{"label": "a", "size": 1}] * 2, "maybeLeaves": [{"label": "a"}, None],
        "resolvedLeaf": {"label": "a"}, "resolvedRequired": {"size": 1},
        "awaitedLeaf": {"label": "a", "size": 1},
    }  # fmt: skip
    assert data["first"] == {"leaves": [{"label": "a"}] * 2, "resolvedLeaf": {"size": 1}}
    # Every kind of failure above was reported, each where graphql-core locates it.
    assert data["branches"][1] is None and data["branches"][5]["leaf"] == {"label": "a", "size": 1}
    assert {tuple(error["path"][:2]) for error in errors} >= {("branches", n) for n in range(1, 7)}


async def test_plain_and_argument_free_fields_never_reach_graphql_cores_field_loop() -> None:
    slow: list[str] = []

    class Counting(DirectExecutionContext):
        def execute_field(self, parent_type: Any, source: Any, details: Any, *rest: Any) -> Any:
            slow.append(details[0].node.name.value)
            return super().execute_field(parent_type, source, details, *rest)

    schema = strawberry.Schema(Tree, execution_context_class=Counting)
    Counting.learn(schema)
    result = await schema.execute(
        "{ first { name count leaves { label size } resolvedLeaf { size } } }"
    )
    assert result.errors is None and result.data is not None
    assert result.data["first"]["leaves"] == [{"label": "a", "size": 1}] * 2
    assert slow == []
    await schema.execute("{ first { name @include(if: true) leaf { label } } __typename }")
    assert sorted(slow) == ["__typename", "name"]  # directives and meta fields: graphql-core's


async def test_an_error_deep_in_a_list_nulls_the_nearest_nullable_parent() -> None:
    query = "{ branches { leaves { label } } }"
    expected = await _answers(strawberry.Schema(Tree), query)
    data, errors = await _answers(direct_schema(Tree), query)
    assert (data, errors) == expected
    assert data["branches"][2] is None  # leaves: [Leaf!]! → the branch itself is nulled
    assert data["branches"][0] == {"leaves": [{"label": "a"}, {"label": "a"}]}
    assert ["branches", 2, "leaves", 1, "label"] in [error["path"] for error in errors]


def compiled_schema(query: type) -> tuple[strawberry.Schema, type[DirectExecutionContext]]:
    """A direct schema that parses each document once, as the app's does, and its executor."""
    execution_context = DirectExecutionContext.for_schema()
    schema = strawberry.Schema(
        query,
        execution_context_class=execution_context,
        extensions=[partial(ParserCache, maxsize=10)],
    )
    execution_context.learn(schema)
    return schema, execution_context


def _compiled_uses(context: type[DirectExecutionContext]) -> dict[str, tuple[int, int]]:
    """(uses, fallbacks) of each compiled selection, by its object type and response names."""
    return {
        " ".join([key[0], *(name for name, _ in key[1])]): (selection.uses, selection.fallbacks)
        for key, (_, selection) in context.compiled.items()
        if selection is not None
    }


PLAIN_TREE_QUERY = """{ branches { __typename name leaf { label size } requiredLeaf { label }
  again: leaf { size } leaves { t: __typename label size } maybeLeaves { label } } }"""


async def test_compiled_selections_answer_like_graphql_core_and_fall_back_on_the_unusual() -> None:
    # Every anomaly of _branches() (nulls in non-null fields, awaitables, raised values, wrong
    # types) reaches compiled selections, which hand those objects to field-by-field execution.
    expected = await _answers(strawberry.Schema(Tree), PLAIN_TREE_QUERY)
    schema, context = compiled_schema(Tree)
    actual = await _answers(schema, PLAIN_TREE_QUERY)
    assert actual == expected
    assert actual[0]["branches"][0]["__typename"] == "Branch"
    assert list(actual[0]["branches"][0]) == [
        "__typename", "name", "leaf", "requiredLeaf", "again", "leaves", "maybeLeaves"
    ]  # fmt: skip
    uses, fallbacks = _compiled_uses(context)[
        "Branch __typename name leaf requiredLeaf again leaves maybeLeaves"
    ]
    assert uses == 7 and 0 < fallbacks < uses


async def test_a_plain_selection_is_compiled_once_and_completes_whole_subtrees() -> None:
    query = "{ first { name leaf { label size } leaves { label } maybeLeaves { size } } }"
    expected = await _answers(strawberry.Schema(Tree), query)
    schema, context = compiled_schema(Tree)
    for _ in range(3):
        assert await _answers(schema, query) == expected
    # Branch's selection completed its leaves itself: theirs were compiled, never run alone.
    assert _compiled_uses(context) == {
        "Branch name leaf leaves maybeLeaves": (3, 0),
        "Leaf label size": (0, 0),
        "Leaf label": (0, 0),
        "Leaf size": (0, 0),
    }
    assert len(context.compiled) == 5  # and Query's (`first` is resolved: not compilable)


async def test_documents_with_directives_are_executed_field_by_field() -> None:
    query = "query($all: Boolean!) { first { name leaf @include(if: $all) { label } } }"
    expected = strawberry.Schema(Tree)
    schema, context = compiled_schema(Tree)
    for flag in (True, False, True):
        got = await schema.execute(query, variable_values={"all": flag})
        want = await expected.execute(query, variable_values={"all": flag})
        assert (got.data, got.errors) == (want.data, want.errors)
        assert ("leaf" in got.data["first"]) is flag  # type: ignore[index]
    assert _compiled_uses(context) == {}


async def test_a_selection_that_keeps_falling_back_stops_being_tried() -> None:
    @strawberry.type
    class Pending:
        @strawberry.field
        async def branches(self) -> list[Branch]:
            # Every leaf awaitable: a compiled Branch selection falls back for each of them.
            return [
                Branch(name=str(n), leaf=_resolved(_leaf()), required_leaf=_leaf(), leaves=[],  # type: ignore[arg-type]
                       maybe_leaves=None)
                for n in range(40)
            ]  # fmt: skip

    schema, context = compiled_schema(Pending)
    result = await schema.execute("{ branches { name leaf { label } } }")
    assert result.errors is None and result.data is not None
    assert [b["leaf"] for b in result.data["branches"]] == [{"label": "a"}] * 40
    uses, fallbacks = _compiled_uses(context)["Branch name leaf"]
    assert uses == fallbacks == 16  # then given up: the other 24 went field by field


async def test_compiled_selections_are_bounded_however_many_documents_arrive() -> None:
    schema, context = compiled_schema(Tree)
    for n in range(COMPILED_SELECTIONS_KEPT + 40):
        result = await schema.execute(f"{{ first {{ a{n}: name }} }}")
        assert result.data == {"first": {f"a{n}": "ok"}}
    assert len(context.compiled) <= COMPILED_SELECTIONS_KEPT


async def test_middleware_disables_the_fast_path() -> None:
    seen: list[str] = []

    class Spy(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    schema = direct_schema(Query, extensions=[Spy])
    await schema.execute("{ items { ratio } }")
    assert seen.count("ratio") == len(_items())


def test_shortcut_coercers_agree_with_each_leaf_types_own_coercion() -> None:
    schemas: list[GraphQLSchema] = []

    class Capture(DirectExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            schemas.append(self.schema)

    app_types = strawberry.Schema(
        query=AppQuery,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=Capture,
    )
    assert app_types.execute_sync("{ __typename }").errors is None
    samples: list[Any] = ["text", "", 0, -(2**31), 2**31 - 1, 2**31, 1.5, float("nan"), True]
    samples += [date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4()]
    checked = 0
    for leaf in schemas[0].type_map.values():
        if not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
            continue
        coerce = output_coercer(leaf)
        values = list(samples)
        if isinstance(leaf, GraphQLEnumType):
            values += [value.value for value in leaf.values.values()]
            values += [leaf.parse_value(name) for name in leaf.values]  # the Python members
            values += [Color.RED]  # another enum's member
        for value in values:
            for _ in range(2):  # the second time from what the enum coercer remembers
                try:
                    fast = coerce(value)
                except Exception:  # the fast path then hands the field to graphql-core
                    break
                if fast is Undefined:
                    break
                assert fast == leaf.coerce_output_value(value), (leaf.name, value)
                assert type(fast) is type(leaf.coerce_output_value(value))
                checked += 1
    assert checked > 20


def test_only_plain_leaf_fields_qualify() -> None:
    plain = plain_fields(strawberry.Schema(Query))
    assert plain[("Item", "name")] == "name" and plain[("Item", "color")] == "color"
    assert ("Item", "shout") not in plain  # has a resolver
    assert ("Query", "items") not in plain  # not a leaf
    assert ("Query", "greeting") not in plain  # has arguments and a resolver


async def test_each_subscription_event_gets_an_executor_of_its_own() -> None:
    """Shared with the subscription's, its memos would keep every event's field sets."""
    built: list[DirectExecutionContext] = []

    class Recording(DirectExecutionContext):
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
    Recording.learn(schema)
    stream = await schema.subscribe("subscription { items { name count color shout } }")
    assert not isinstance(stream, ExecutionResult)
    names = [result.data["items"]["name"] async for result in stream if result.data]
    assert names == [f"item {n}" for n in range(200)]
    assert len(built) == 201 and len({id(executor) for executor in built}) == 201
    assert {type(executor) for executor in built} == {Recording}


async def test_a_shared_event_is_built_and_rendered_once_per_selection() -> None:
    """One user's sockets with the same document and variables share one event's rendering."""
    built: list[int] = []

    def build(n: int) -> Any:
        built.append(n)
        return Item(name=f"item {n}", count=n, color=Color.RED, ratio=None)

    events: list[dict[Any, Any]] = [
        {} for _ in range(3)
    ]  # each event's render cache, as the hub's AlertEvent has

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def items(self) -> AsyncGenerator[Item, None]:
            for n, renders in enumerate(events):
                yield cast(Item, SharedRender(renders, cast(Any, partial(build, n))))

    schema = direct_schema(Query, subscription=Subscription)

    async def answers(document: str, variables: dict[str, Any] | None = None) -> list[Any]:
        stream = await schema.subscribe(document, variable_values=variables)
        assert not isinstance(stream, ExecutionResult)
        return [result.data async for result in stream]

    same = "subscription S($x: Boolean!) { items { name count @include(if: $x) shout } }"
    first = await answers(same, {"x": True})
    assert await answers(same, {"x": True}) == first
    assert built == [0, 1, 2]  # the second subscription built and executed nothing
    other = await answers(same, {"x": False})  # other variables: rendered anew
    assert built == [0, 1, 2] * 2
    assert first[1] == {"items": {"name": "item 1", "count": 1, "shout": "ITEM 1"}}
    assert other[1] == {"items": {"name": "item 1", "shout": "ITEM 1"}}
