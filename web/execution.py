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

import weakref
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.pyutils import Path, RefMap, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# (attribute name, leaf type, non-null) for a qualifying field; None for any other field.
LeafPlan = tuple[str, GraphQLLeafType, bool] | None

# One entry per response key of an object's selection: the key, its field details and the
# leaf plan when the field can be read inline (None: graphql-core executes it).
FieldsPlan = list[tuple[str, list[FieldDetails], "LeafPlan"]]

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
    return strawberry_field.python_name, leaf, non_null


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
        try:
            for response_name, field_details_list, leaf in self._fields_plan(
                parent_type, grouped_field_set
            ):
                if leaf is not None:
                    value = self._read_leaf(source_value, leaf)
                    if value is not Undefined:
                        results[response_name] = value
                        continue
                result = execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                    position_context,
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
            leaf = None
            if field_def is not None and not first_node.arguments:
                leaf = self._plan(field_def)
            plan.append((response_name, field_details_list, leaf))
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

    def _read_leaf(self, source: Any, plan: tuple[str, GraphQLLeafType, bool]) -> Any:
        """The completed value, or Undefined when graphql-core must handle this field."""
        name, leaf, non_null = plan
        try:
            value = getattr(source, name)
            if value is None:
                return Undefined if non_null else None
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
