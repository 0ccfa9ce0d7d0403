"""graphql-core execution with plain leaf fields read directly (most of a watchlist's ~1,600).

Built on public extension points only. graphql-core documents `execution_context_class` (which
Strawberry passes on) as the way to customise execution: a subclass of its ExecutionContext
overriding public methods. Here `execute_fields` reads an object's plain leaves in one pass
and hands the rest to graphql-core's own `execute_fields`; `build_per_event_executor` and
`execute_operation` give each subscription event its own executor and let the events that
carry a render cache be executed once per selection. Which fields are plain comes from
Strawberry's `Schema.get_field_for_type`.

A field is plain when Strawberry resolves it by reading the attribute of its Python name (no
resolver, no field extensions or permissions, no arguments, the schema's default resolver is
getattr) and its type is a scalar or enum. With no middleware installed, such a field is read
and coerced directly: no ResolveInfo, no path, no resolver call, no generic completion.
Anything unusual (an exception, an awaitable, null for a non-null field, a coercion that
fails) goes through graphql-core, which redoes the read (attribute reads have no side
effects) and reports errors exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar
from uuid import UUID

import strawberry
from graphql import (
    ExecutionResult,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLString,
    build_schema,
    get_nullable_type,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.subscriptions import SharedRender

# The output value for the common Python type of a leaf type, or Undefined for any other value
# (which then takes the type's own coerce_output_value).
Coercer = Callable[[Any], Any]

# (attribute name, leaf type, non-null, coercer) of a plain field; None for any other.
Plan = tuple[str, GraphQLLeafType, bool, Coercer]
LeafPlan = Plan | None

# An object's plain leaves by response name, and the grouped field set of its other fields.
FieldsPlan = tuple[list[tuple[str, Plan]], GroupedFieldSet]

# What a subscription event's render cache knows a selection by: the document's text (the
# operation node's id if it has no location), the operation's name, the variables.
RenderKey = tuple[str, str | None, str]

# (GraphQL type name, field name) → the Python attribute a plain leaf field reads.
PlainFields = dict[tuple[str, str], str]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
PLAIN_VALUE_TYPES = frozenset({str, int, float, bool, date, datetime, UUID, Decimal})


def plain_fields(schema: strawberry.Schema) -> PlainFields:
    """The schema's plain leaf fields, by type and field name, with the attribute each reads."""
    if schema.config.default_resolver is not getattr:
        return {}
    found: PlainFields = {}
    for type_name, named in build_schema(schema.as_str()).type_map.items():
        if not isinstance(named, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field_name, field in named.fields.items():
            leaf = get_nullable_type(field.type)
            if field.args or not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                continue
            definition = schema.get_field_for_type(field_name, type_name)
            if definition is None or definition.base_resolver is not None:
                continue
            if definition.extensions or definition.permission_classes:
                continue
            found[(type_name, field_name)] = definition.python_name
    return found


def output_coercer(leaf: GraphQLLeafType) -> Coercer:
    """A shortcut for the Python type each leaf type usually holds, same result as the type's.

    Enum values are Python enum members: each one's output is the type's own coercion,
    remembered per member (Strawberry's enum type scans all of its values per call).
    graphql-core's scalars check several types first; a type test gives the same output.
    """
    if isinstance(leaf, GraphQLEnumType):
        names: dict[Enum, Any] = {}

        def enum_name(value: Any) -> Any:
            if not isinstance(value, Enum):
                return Undefined
            name = names.get(value, Undefined)
            if name is Undefined:
                name = names[value] = leaf.coerce_output_value(value)
            return name

        return enum_name
    if leaf is GraphQLString or leaf is GraphQLID:
        return lambda value: value if type(value) is str else Undefined
    if leaf is GraphQLBoolean:
        return lambda value: value if type(value) is bool else Undefined
    if leaf is GraphQLFloat:
        return lambda value: value if type(value) is float and math.isfinite(value) else Undefined
    if leaf is GraphQLInt:
        return lambda value: (
            value if type(value) is int and INT_MIN <= value <= INT_MAX else Undefined
        )
    coerce_output_value = leaf.coerce_output_value

    def custom_scalar(value: Any) -> Any:
        # A plain value can be neither awaitable nor an error: only the scalar's own coercion.
        if type(value) not in PLAIN_VALUE_TYPES:
            return Undefined
        coerced = coerce_output_value(value)
        return Undefined if coerced is None else coerced

    return custom_scalar


def remember(renders: dict[Any, Any], key: RenderKey, result: Any) -> None:
    """Keep an event's result for the other subscriptions with this selection, if clean."""
    if isinstance(result, ExecutionResult) and not result.errors and not result.extensions:
        renders[key] = result.data


def in_query_order(
    grouped_field_set: GroupedFieldSet, read: dict[str, Any], rest: dict[str, Any]
) -> dict[str, Any]:
    """The fields read directly and the others, in the order the query asks for them."""
    merged: dict[str, Any] = {}
    for response_name in grouped_field_set:
        if response_name in read:
            merged[response_name] = read[response_name]
        elif response_name in rest:
            merged[response_name] = rest[response_name]
    return merged


class PlainLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain leaf fields completed directly.

    Use `for_schema()`: each schema gets a subclass whose table `learn()` fills once the
    schema exists (Strawberry takes the class before it builds the schema).
    """

    plain: ClassVar[PlainFields] = {}
    plans: ClassVar[dict[tuple[str, str], LeafPlan]] = {}

    @classmethod
    def for_schema(cls) -> type[PlainLeafExecutionContext]:
        """A subclass with tables of its own, empty until `learn(schema)`."""
        return type(cls.__name__, (cls,), {"plain": {}, "plans": {}})

    @classmethod
    def learn(cls, schema: strawberry.Schema) -> None:
        """Fill this class's table of plain fields from the schema it executes."""
        cls.plain = plain_fields(schema)
        cls.plans = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self.direct = manager is None or not manager.middlewares
        # Per request: id(grouped field set) → (it, its plan). graphql-core collects the
        # subfields of a list's objects once, so one plan serves all 50 items; the set is kept
        # so that its id cannot be reused within the request.
        self.known: dict[int, tuple[GroupedFieldSet, FieldsPlan]] = {}
        # The render cache of the subscription event this executor runs, if it has one.
        self.renders: dict[Any, Any] | None = None
        self.key: RenderKey | None = None

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """graphql-core's documented customisation point: plain leaves read in one pass."""
        # Every other field (and a plain one whose value is unusual: an exception, an
        # awaitable, null for a non-null field, a failing coercion) goes through graphql-core's
        # own execute_fields, which resolves and reports it exactly as without this class.
        if not self.direct:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        known = self.known.get(id(grouped_field_set))
        if known is None or known[0] is not grouped_field_set:
            known = (grouped_field_set, self.fields_plan(parent_type, grouped_field_set))
            self.known[id(grouped_field_set)] = known
        leaves, others = known[1]
        read: dict[str, Any] = {}
        for response_name, (name, leaf, non_null, coerce) in leaves:
            try:
                value = getattr(source_value, name)
                if value is None:
                    if not non_null:
                        read[response_name] = None
                        continue
                else:
                    coerced = coerce(value)
                    if coerced is Undefined and not (
                        isinstance(value, Exception) or self.is_awaitable(value)
                    ):
                        coerced = leaf.coerce_output_value(value)
                    if coerced is not Undefined and coerced is not None:
                        read[response_name] = coerced
                        continue
            except Exception:
                pass  # graphql-core reads it again and reports the error as usual
            if others is known[1][1]:
                others = dict(others)
            others[response_name] = grouped_field_set[response_name]
        if not others:
            return read
        rest = super().execute_fields(parent_type, source_value, path, others, position_context)
        if isinstance(rest, dict):
            return in_query_order(grouped_field_set, read, rest)

        async def merged() -> dict[str, Any]:
            return in_query_order(grouped_field_set, read, await rest)

        return merged()

    def fields_plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> FieldsPlan:
        """The fields read directly (with their plans) and the set of all the others."""
        leaves: list[tuple[str, Plan]] = []
        others: GroupedFieldSet = {}
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            plan = None if node.arguments else self.leaf_plan(parent_type, node.name.value)
            if plan is None:
                others[response_name] = field_details_list
            else:
                leaves.append((response_name, plan))
        return leaves, others

    def build_per_event_executor(self, payload: Any) -> Any:
        """A new executor per subscription event, sharing only the validated operation."""
        # graphql-core's own is a shallow copy: it would share the subscription's memos, which
        # are keyed by (and keep alive) the field sets every event collects anew, so an open
        # subscription grew by every event's (~2 KB per alert delivered). A SharedRender
        # payload's alert is built only when its render cache lacks this selection.
        renders = None
        if isinstance(payload, SharedRender):
            renders = payload.renders
            payload = None if self.render_key() in renders else payload.build()
        executor = type(self)(
            self.schema,
            self.fragment_definitions,
            self.fragments,
            payload,
            self.context_value,
            self.operation,
            self.variable_values,
            self.field_resolver,
            self.type_resolver,
            self.subscribe_field_resolver,
            enable_early_execution=self.enable_early_execution,
            middleware_manager=self.middleware_manager,
            is_awaitable=self.is_awaitable,
            is_async_iterable=self.is_async_iterable,
            hide_suggestions=self.hide_suggestions,
            abort_signal=self.abort_signal,
            hooks=self.hooks,
            operation_extensions=self.operation_extensions,
        )
        executor.renders = renders
        executor.key = self.key
        return executor

    def render_key(self) -> RenderKey:
        """What an event's render cache knows this operation's selection by."""
        if self.key is None:
            # The document's text, the operation's name and the variables decide the answer
            # to one user's event (the sockets of one user have the same viewer).
            loc, name = self.operation.loc, self.operation.name
            self.key = (
                loc.source.body if loc else str(id(self.operation)),
                name.value if name else None,
                repr(self.variable_values.coerced),
            )
        return self.key

    def execute_operation(self, serially: bool | None = None) -> Any:
        """graphql-core's, or the result an event's render cache holds for this selection."""
        # Only results without errors are kept: errors go through the usual handling each time.
        renders = self.renders
        if renders is None:
            return super().execute_operation(serially)
        key = self.render_key()
        known = renders.get(key)
        if known is not None:
            return ExecutionResult(known, None)
        result = super().execute_operation(serially)
        if not self.is_awaitable(result):
            remember(renders, key, result)
            return result

        async def remembered() -> Any:
            done = await result
            remember(renders, key, done)
            return done

        return remembered()

    def leaf_plan(self, parent_type: GraphQLObjectType, field_name: str) -> LeafPlan:
        """How to read this field directly, or None when it needs the full machinery."""
        key = (parent_type.name, field_name)
        plans = self.plans
        if key in plans:
            return plans[key]
        plan: LeafPlan = None
        attribute = self.plain.get(key)
        field_def = parent_type.fields.get(field_name)
        if attribute is not None and field_def is not None:
            field_type = field_def.type
            leaf = get_nullable_type(field_type)
            if isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                non_null = isinstance(field_type, GraphQLNonNull)
                plan = (attribute, leaf, non_null, output_coercer(leaf))
        plans[key] = plan
        return plan
