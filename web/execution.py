"""graphql-core execution with a fast path for plain leaf fields (most of a watchlist's ~1,700).

Two levels: `execute_fields` walks an object's selection from a per-request plan and reads
qualifying leaves inline (no Path, no method call per leaf); `execute_field` does the same
for a single field reached any other way (e.g. serial mutation roots).

A field qualifies when Strawberry resolves it by reading an attribute (no resolver, no field
extensions, no arguments, no middleware) and its type is a scalar or enum. For those the
ResolveInfo, the resolver wrappers and the generic completion are skipped: the value is read
and coerced directly. Anything unusual (an exception, an awaitable, null for a non-null
field, a coercion that fails) goes through graphql-core's own execute_field, which redoes
the read (attribute reads have no side effects) and reports errors exactly as before.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from graphql import (
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, RefMap, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import CustomGraphQLEnumType, GraphQLCoreConverter

from resolvers.subscriptions import LIVE_OPERATION

# The output value for the common Python type of a leaf type, or Undefined for any other value
# (which then takes the type's own coerce_output_value).
Coercer = Callable[[Any], Any]

# (attribute name, leaf type, non-null, coercer) for a qualifying field; None for any other.
LeafPlan = tuple[str, GraphQLLeafType, bool, Coercer] | None

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
PLAIN_VALUE_TYPES = frozenset({str, int, float, bool, date, datetime, UUID, Decimal})

# A resolver field without arguments or extensions: its Python name and definition. When the
# parent object holds the field's final value (see HELD_VALUES), the resolver is not called.
HeldPlan = tuple[str, GraphQLField] | None

# One entry per response key of an object's selection: the key, its field details, the leaf
# plan when the field can be read inline, the held plan for a plain resolver field (both
# None: graphql-core executes it).
FieldsPlan = list[tuple[str, list[FieldDetails], "LeafPlan", HeldPlan]]

# The attribute in which an object may hold the values its resolver fields would return, by
# Python field name (e.g. schema.stock.Stock.preloaded, filled by the query that built it).
HELD_VALUES = "preloaded"

# Per schema: id(field) → (field, plan); the field is kept so its id cannot be reused.
_PLANS: weakref.WeakKeyDictionary[GraphQLSchema, dict[int, tuple[GraphQLField, LeafPlan]]] = (
    weakref.WeakKeyDictionary()
)


def leaf_plan(field_def: GraphQLField) -> LeafPlan:
    """How to read `field_def` directly, or None when it needs the full machinery."""
    resolve = field_def.resolve
    if getattr(resolve, "__name__", None) != "_get_basic_result" or field_def.args:
        return None
    strawberry_field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if strawberry_field is None or strawberry_field.default_resolver is not getattr:
        return None
    if strawberry_field.base_resolver is not None or strawberry_field.extensions:
        return None
    field_type = field_def.type
    non_null = isinstance(field_type, GraphQLNonNull)
    leaf = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    if not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
        return None
    return strawberry_field.python_name, leaf, non_null, output_coercer(leaf)


def held_plan(field_def: GraphQLField) -> HeldPlan:
    """The Python name of a resolver field a parent may hold the value of, else None."""
    if field_def.args:
        return None
    strawberry_field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if strawberry_field is None or strawberry_field.base_resolver is None:
        return None
    if strawberry_field.extensions or strawberry_field.arguments:
        return None
    return strawberry_field.python_name, field_def


def output_coercer(leaf: GraphQLLeafType) -> Coercer:
    """A shortcut for the Python type each leaf type usually holds, same result as the type's.

    Strawberry's enum type scans all of its values per call and graphql-core's scalars check
    several types first; a type test and a dict lookup give the same output for these values.
    """
    if isinstance(leaf, CustomGraphQLEnumType):
        member_class = leaf.wrapped_cls
        names: dict[Any, str] = {
            member_class(value.value): name for name, value in leaf.values.items()
        }

        def enum_name(value: Any) -> Any:
            return names.get(value, Undefined) if type(value) is member_class else Undefined

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


class FastLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain leaf fields completed inline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._fast = manager is None or not manager.middlewares
        self._plans = _PLANS.setdefault(self.schema, {})
        # Per request: (parent type, grouped field set) → plan; graphql-core reuses the
        # grouped field set of a selection for every object of a list, so this hits 49 of 50.
        self._fields_plans: dict[tuple[int, int], tuple[Any, FieldsPlan]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's loop, with qualifying leaves read inline (no Path, no call per leaf)."""
        if not self._fast:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        execute_field = super().execute_field
        held_values = getattr(source_value, HELD_VALUES, None)
        if type(held_values) is not dict:
            held_values = None
        try:
            for response_name, field_details_list, leaf, held in self._fields_plan(
                parent_type, grouped_field_set
            ):
                if leaf is not None:
                    value = self._read_leaf(source_value, leaf)
                    if value is not Undefined:
                        results[response_name] = value
                        continue
                field_path = Path(path, response_name, parent_type.name)
                if held is not None and held_values is not None and held[0] in held_values:
                    held_value = held_values[held[0]]
                    if not is_awaitable(held_value):
                        result = self._complete_held(
                            parent_type,
                            held[1],
                            field_details_list,
                            field_path,
                            held_value,
                            position_context,
                        )
                        if result is not Undefined:
                            results[response_name] = result
                            if is_awaitable(result):
                                awaitable_fields.append(response_name)
                        continue
                result = execute_field(
                    parent_type, source_value, field_details_list, field_path, position_context
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def build_resolve_info(
        self,
        field_def: GraphQLField,
        field_nodes: list[FieldNode],
        parent_type: GraphQLObjectType,
        path: Path,
    ) -> GraphQLResolveInfo:
        if path.prev is None and parent_type is self.schema.subscription_type:
            # The subscription's own executor: live events are rendered with its copies.
            live = LIVE_OPERATION.get()
            if live is not None and live.executor is None:
                live.executor = self
        return super().build_resolve_info(field_def, field_nodes, parent_type, path)

    def build_per_event_executor(self, payload: Any) -> Any:
        """graphql-core's copy for one subscription event, with memos of its own."""
        # The copy is shallow: it would share the subscription's memos, which are keyed by
        # (and keep alive) the field sets every event collects anew, so an open subscription
        # grew by every event's (~2 KB per alert delivered). Per event they still serve lists.
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, FastLeafExecutionContext)  # a copy keeps the class
        executor._relevant_sub_fields = {}
        executor._stream_usages = RefMap()
        executor._fields_plans = {}
        return executor

    def _fields_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> FieldsPlan:
        key = (id(parent_type), id(grouped_field_set))
        known = self._fields_plans.get(key)
        if known is not None and known[0] is grouped_field_set:
            return known[1]
        plan: FieldsPlan = []
        for response_name, field_details_list in grouped_field_set.items():
            first_node = field_details_list[0].node
            field_def = self.schema.get_field(parent_type, first_node.name.value)
            leaf: LeafPlan = None
            held: HeldPlan = None
            if field_def is not None and not first_node.arguments:
                leaf = self._plan(field_def)
                held = held_plan(field_def) if leaf is None else None
            plan.append((response_name, field_details_list, leaf, held))
        self._fields_plans[key] = (grouped_field_set, plan)
        return plan

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        if self._fast:
            first_node = field_details_list[0].node
            field_def = self.schema.get_field(parent_type, first_node.name.value)
            if field_def is not None and not first_node.arguments:
                plan = self._plan(field_def)
                if plan is not None:
                    value = self._read_leaf(source, plan)
                    if value is not Undefined:
                        return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _complete_held(
        self,
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
        field_details_list: Any,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's execute_field after its resolver call, with `value` as the result."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(field_details_list), parent_type, path)
        try:
            completed = self.complete_value(
                return_type, field_details_list, info, path, value, position_context
            )
            if self.is_awaitable(completed):

                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, return_type, field_details_list, path)
                        return None

                return await_completed()
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    def _read_leaf(self, source: Any, plan: tuple[str, GraphQLLeafType, bool, Coercer]) -> Any:
        """The completed value, or Undefined when graphql-core must handle this field."""
        name, leaf, non_null, coerce = plan
        try:
            value = getattr(source, name)
            if value is None:
                return Undefined if non_null else None
            coerced = coerce(value)
            if coerced is not Undefined:
                return coerced
            if isinstance(value, Exception) or self.is_awaitable(value):
                return Undefined
            coerced = leaf.coerce_output_value(value)
        except Exception:
            return Undefined
        return Undefined if coerced is None else coerced

    def _plan(self, field_def: GraphQLField) -> LeafPlan:
        known = self._plans.get(id(field_def))
        if known is None:
            known = (field_def, leaf_plan(field_def))
            self._plans[id(field_def)] = known
        return known[1]
