"""Static query cost: what an operation may produce, computed from its document and variables.

An object costs 1 and a leaf nothing. A list multiplies the cost of one element by its size:
the `first`/`limit` argument (as given, else its default), capped at the largest page any
field serves, else the size a connection's `first` gave (its `edges`), else the field's known
maximum. Windowed series (`prices`, `signalHistory`) count one element per trading day of
their `from`/`to` window, with the defaults the resolvers use. Introspection costs 1: the
schema is finite and small.

The walk tolerates documents that would fail validation (unknown fields and fragments cost
nothing; fragment cycles stop), so it never raises on client input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_argument_values,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    get_variable_values,
    is_composite_type,
)

from services.delivery.endpoints import MAX_ENDPOINTS
from services.delivery.push_subscriptions import MAX_SUBSCRIPTIONS
from services.errors import BadUserInput
from services.market.signals.registry import KINDS
from services.price_chart import price_window
from services.signal_history import history_window
from services.watchlists import MAX_WATCHLIST_SIZE

DEFAULT_MAX_COST = 20_000
# The largest page any list field serves (alerts, deliveries); larger sizes are refused by
# the resolver anyway, so they cost no more than this.
MAX_PAGE = 100
TRADING_DAYS_PER_YEAR = 252
# Lists with no size argument: their most elements (an unknown list counts MAX_PAGE).
LIST_MAXIMA: dict[str, int] = {
    "items": MAX_WATCHLIST_SIZE,
    "webhooks": MAX_ENDPOINTS,
    "pushSubscriptions": MAX_SUBSCRIPTIONS,
    # One element per signal kind: WatchlistItem.signals, Signal.states, SignalHistory's
    # states and alertsPerYear.
    "signals": len(KINDS),
    "states": len(KINDS),
    "alertsPerYear": len(KINDS),
    "byType": 16,
}
SIZE_ARGUMENTS = ("first", "limit")
# Daily series whose length is their date window in trading days.
WINDOWED_FIELDS = frozenset({"prices", "signalHistory"})
_COSTED_ARGUMENTS = frozenset({*SIZE_ARGUMENTS, "from", "to"})
_MAX_FRAGMENT_DEPTH = 64
_MAX_FIELDS = 10_000


class CostModel:
    """Costs operations against one schema; what it learns of each field is kept."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        # (parent type, field) → what costing needs of it; None for a leaf or unknown field.
        self.fields: dict[tuple[str, str], _Field | None] = {}

    def cost(
        self,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        today: date | None = None,
    ) -> int:
        """The cost of the named (or only) operation of `document`; 0 when there is none."""
        schema = self.schema
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return 0
        root = schema.get_root_type(operation.operation)
        if root is None:
            return 0
        values = get_variable_values(
            schema, operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(values, list):  # variables that do not coerce: refused before execution
            values = get_variable_values(schema, (), {})
        walk = _Walk(self, document, values, today or datetime.now(UTC).date())
        return walk.selections(root, operation.selection_set, None, 0)

    def field(self, parent: GraphQLNamedType, name: str) -> _Field | None:
        key = (parent.name, name)
        try:
            return self.fields[key]
        except KeyError:
            pass
        fields = getattr(parent, "fields", None)
        definition: GraphQLField | None = fields.get(name) if fields else None
        known = None
        if definition is not None:
            element = get_named_type(definition.type)
            if is_composite_type(element):
                known = _Field(
                    definition,
                    element,
                    isinstance(get_nullable_type(definition.type), GraphQLList),
                    not definition.args.keys().isdisjoint(_COSTED_ARGUMENTS),
                    name in WINDOWED_FIELDS,
                    LIST_MAXIMA.get(name, MAX_PAGE),
                )
        if len(self.fields) < _MAX_FIELDS:  # only schema fields repeat; bounded all the same
            self.fields[key] = known
        return known


@dataclass(frozen=True, slots=True)
class _Field:
    definition: GraphQLField
    element: GraphQLNamedType
    is_list: bool
    has_costed_arguments: bool
    windowed: bool
    maximum: int


class _Walk:
    def __init__(
        self,
        model: CostModel,
        document: DocumentNode,
        variables: Any,
        today: date,
    ) -> None:
        self.model = model
        self.schema = model.schema
        self.variables = variables
        self.today = today
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def selections(
        self,
        parent: GraphQLNamedType,
        selection_set: SelectionSetNode | None,
        page: int | None,
        depth: int,
    ) -> int:
        if selection_set is None or depth > _MAX_FRAGMENT_DEPTH:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection, page, depth)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                if target is not None:
                    total += self.selections(target, selection.selection_set, page, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    if target is not None:
                        total += self.selections(target, fragment.selection_set, page, depth + 1)
        return total

    def field(self, parent: GraphQLNamedType, node: FieldNode, page: int | None, depth: int) -> int:
        name = node.name.value
        if name in ("__schema", "__type"):
            return 1
        known = self.model.field(parent, name)
        if known is None:
            return 0  # a leaf, __typename, or a field validation refuses
        arguments = self.arguments(known.definition, node) if known.has_costed_arguments else {}
        size = self.size_argument(arguments)
        if known.windowed and not known.is_list:
            # An object computed over its window (signalHistory): every trading day of the
            # window is evaluated once, however little of the answer is selected.
            days = self.trading_days(arguments, name)
            return days + 1 + self.selections(known.element, node.selection_set, None, depth + 1)
        if known.is_list:
            if known.windowed:
                count = self.trading_days(arguments, name)
            elif size is not None:
                count = size
            elif page is not None:
                count = page
            else:
                count = known.maximum
            inner_page = None
        else:
            count = 1
            inner_page = size  # a connection: its `first` sizes its edges
        one = 1 + self.selections(known.element, node.selection_set, inner_page, depth + 1)
        return count * one

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        try:
            return get_argument_values(definition, node, self.variables)
        except (GraphQLError, TypeError, ValueError):
            return {}  # refused by validation or coercion before execution

    @staticmethod
    def size_argument(arguments: Mapping[str, Any]) -> int | None:
        for name in SIZE_ARGUMENTS:
            value = arguments.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(0, min(value, MAX_PAGE))
        return None

    def trading_days(self, arguments: Mapping[str, Any], name: str) -> int:
        start = _as_date(arguments.get("from"))
        end = _as_date(arguments.get("to"))
        try:
            if name == "signalHistory":
                first, last = history_window(start, end, self.today)
            else:
                first, last = price_window(start, end, today=self.today)
        except BadUserInput:
            return 0  # the resolver refuses the window
        days = (last - first).days + 1
        return math.ceil(days * TRADING_DAYS_PER_YEAR / 365)


def _as_date(value: object) -> date | None:
    """A Date argument: parsed from a literal already, or still the variable's ISO text."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None
