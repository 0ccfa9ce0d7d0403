"""graphql-core execution with a fast path for plain leaf fields (most of a watchlist's ~1,700).

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
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# (attribute name, leaf type, non-null) for a qualifying field; None for any other field.
LeafPlan = tuple[str, GraphQLLeafType, bool] | None

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
