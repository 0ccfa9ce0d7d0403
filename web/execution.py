"""graphql-core execution with the common fields executed directly (a watchlist has ~1,750).

Built on public extension points only. graphql-core documents `execution_context_class` (which
Strawberry passes on) as the way to customise execution: a subclass of its ExecutionContext
overriding its methods. Here `execute_fields` runs an object's fields itself and hands the
unusual ones to graphql-core's own `execute_field`; `build_per_event_executor` and
`execute_operation` give each subscription event its own executor and let the events that
carry a render cache be executed once per selection. Which fields are plain comes from
Strawberry's `Schema.get_field_for_type`.

Two kinds of field are executed directly, with no middleware installed:

- A plain leaf: Strawberry reads the attribute of its Python name (no resolver, no field
  extensions or permissions, no arguments, the schema's default resolver is getattr) and its
  type is a scalar or enum. It is read and coerced in the object's loop: no ResolveInfo, no
  path, no resolver call, no generic completion.
- A field without arguments whose type is a leaf, an object or a list of objects (object
  types without `is_type_of`): its value is read (plain) or resolved by the field's own
  resolver (Strawberry's, with its extensions and permissions), then completed directly: a
  leaf coerced, an object's subfields collected and executed by graphql-core's own
  `collect_subfields` / `execute_collected_subfields`.

Anything unusual (an exception, an awaitable, null for a non-null field, a coercion that
fails, a field with arguments or directives) goes through graphql-core: a plain field is
executed again by its `execute_field` (attribute reads have no side effects), a resolved
value is completed by its `complete_value`, and errors are located and propagated by its
`handle_field_error`, exactly as before.

A selection whose fields are all plain (leaves, objects and lists of objects read from
attributes, `__typename`) in a document without directives is compiled once into a Python
function (`compile_selection`), kept across requests by its field nodes (documents are parsed
once and cached): it builds the object's whole answer, nested plain selections included,
without a call, Path or plan lookup per field. On anything unusual it returns FALLBACK and the
object is executed as above; a selection that falls back too often is no longer tried.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from types import GeneratorType
from typing import Any, ClassVar, cast
from uuid import UUID

import strawberry
from graphql import (
    ExecutionResult,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLString,
    SelectionSetNode,
    build_schema,
    get_nullable_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.subscriptions import SharedRender

# The output value for the common Python type of a leaf type, or Undefined for any other value
# (which then takes the type's own coerce_output_value).
Coercer = Callable[[Any], Any]

# A plain leaf: (attribute name, leaf type, non-null, coercer).
LeafPlan = tuple[str, GraphQLLeafType, bool, Coercer]
# A value completed directly: (field, the attribute a plain field reads or None to call its
# resolver, its type, the coercer of a leaf type or None for objects).
ValuePlan = tuple[GraphQLField, str | None, GraphQLOutputType, Coercer | None]
# How a field is executed: LEAF or VALUE with its plan, or OTHER (graphql-core's way).
LEAF, VALUE, OTHER = "leaf", "value", "other"
FieldPlan = tuple[str, LeafPlan | ValuePlan | None]
NO_PLAN: FieldPlan = (OTHER, None)

# One field of an object's grouped field set: response name, its field details, kind, plan.
Step = tuple[str, FieldDetailsList, str, Any]

# What a subscription event's render cache knows a selection by: the document's text (the
# operation node's id if it has no location), the operation's name, the variables.
RenderKey = tuple[str, str | None, str]

# (GraphQL type name, field name) → the Python attribute a plain field reads.
PlainFields = dict[tuple[str, str], str]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# What a compiled selection returns when the object must be executed field by field instead.
FALLBACK: Any = object()
PLAIN_VALUE_TYPES = frozenset({str, int, float, bool, date, datetime, UUID, Decimal})


def plain_fields(schema: strawberry.Schema) -> PlainFields:
    """The schema's plain fields, by type and field name, with the attribute each reads."""
    if schema.config.default_resolver is not getattr:
        return {}
    found: PlainFields = {}
    for type_name, named in build_schema(schema.as_str()).type_map.items():
        if not isinstance(named, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field_name, field in named.fields.items():
            if field.args:
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


class DirectExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with the common fields executed directly.

    Use `for_schema()`: each schema gets a subclass whose table `learn()` fills once the
    schema exists (Strawberry takes the class before it builds the schema).
    """

    plain: ClassVar[PlainFields] = {}
    plans: ClassVar[dict[tuple[str, str], FieldPlan]] = {}
    # Selections compiled (or found not plain) so far, with the field nodes they were made for.
    compiled: ClassVar[dict[SelectionKey, tuple[tuple[Any, ...], CompiledSelection | None]]] = {}

    @classmethod
    def for_schema(cls) -> type[DirectExecutionContext]:
        """A subclass with tables of its own, empty until `learn(schema)`."""
        return type(cls.__name__, (cls,), {"plain": {}, "plans": {}, "compiled": {}})

    @classmethod
    def learn(cls, schema: strawberry.Schema) -> None:
        """Fill this class's table of plain fields from the schema it executes."""
        cls.plain = plain_fields(schema)
        cls.plans = {}
        cls.compiled = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self.direct = manager is None or not manager.middlewares
        # Per request: id(grouped field set) → (it, its steps). graphql-core collects the
        # subfields of a list's objects once, so one plan serves all 50 items; the set is kept
        # so that its id cannot be reused within the request.
        self.known: dict[int, tuple[GroupedFieldSet, list[Step], CompiledSelection | None]] = {}
        self.document_directives: bool | None = None
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
        """graphql-core's documented customisation point: the common fields run directly.

        The same loop as graphql-core's: each field's result in query order, awaitables
        gathered at the end, and on an error that reaches this object the pending awaitables
        settled in the background before it propagates.
        """
        if not self.direct:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        known = self.known.get(id(grouped_field_set))
        if known is None or known[0] is not grouped_field_set:
            known = (
                grouped_field_set,
                self.steps(parent_type, grouped_field_set),
                self.compiled_selection(parent_type, grouped_field_set),
            )
            self.known[id(grouped_field_set)] = known
        compiled = known[2]
        if compiled is not None and compiled.enabled:
            compiled.uses += 1
            done = compiled.run(source_value)
            if done is not FALLBACK:
                return done
            compiled.fallbacks += 1
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list, kind, plan in known[1]:
                if kind is LEAF:
                    name, leaf, non_null, coerce = plan
                    try:
                        value = getattr(source_value, name)
                        if value is None:
                            if not non_null:
                                results[response_name] = None
                                continue
                        else:
                            coerced = coerce(value)
                            if coerced is Undefined and not (
                                isinstance(value, Exception) or is_awaitable(value)
                            ):
                                coerced = leaf.coerce_output_value(value)
                            if coerced is not Undefined and coerced is not None:
                                results[response_name] = coerced
                                continue
                    except Exception:
                        pass  # graphql-core reads it again and reports the error as usual
                if kind is VALUE:
                    result = self.execute_value_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                        plan,
                    )
                else:
                    result = self.execute_field(
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
            self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        return with_awaited(results, awaitable_fields)

    def execute_value_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
        plan: ValuePlan,
    ) -> Any:
        """A field read or resolved (no arguments), its value completed directly.

        Completed as graphql-core's `complete_value` would; any value it would treat otherwise
        (null for a non-null type, an exception, an awaitable, a list holding one of those, a
        leaf the shortcut coercer does not take) goes to its own completion.
        """
        field_def, attribute, return_type, coerce = plan
        info: GraphQLResolveInfo | None = None
        try:
            if attribute is None:
                info = self.build_resolve_info(
                    field_def, [details.node for details in field_details_list], parent_type, path
                )
                assert field_def.resolve is not None
                value = field_def.resolve(source, info)
            else:
                value = getattr(source, attribute)
            completed = self.complete_directly(
                return_type, field_details_list, path, value, position_context, coerce
            )
            if completed is Undefined:
                if info is None:
                    info = self.build_resolve_info(
                        field_def,
                        [details.node for details in field_details_list],
                        parent_type,
                        path,
                    )
                if self.is_awaitable(value):
                    return self.complete_awaitable_value(
                        return_type, field_details_list, info, path, value, position_context
                    )
                completed = self.complete_value(
                    return_type, field_details_list, info, path, value, position_context
                )
            if self.is_awaitable(completed):
                return self.await_completed(completed, return_type, field_details_list, path)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    async def await_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """An awaitable completion's value, its error handled as graphql-core handles it."""
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def complete_directly(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
        coerce: Coercer | None,
    ) -> Any:
        """The completed leaf, object or list of objects, or Undefined for graphql-core."""
        nullable = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        if value is None:
            return None if nullable is return_type else Undefined
        if coerce is not None:
            coerced = coerce(value)
            return Undefined if coerced is None else coerced
        if isinstance(nullable, GraphQLObjectType):
            if isinstance(value, Exception) or self.is_awaitable(value):
                return Undefined
            return self.complete_object_directly(
                nullable, field_details_list, path, value, position_context
            )
        if type(value) not in (list, tuple):
            return Undefined
        item_type = cast(GraphQLList[Any], nullable).of_type
        object_type = get_nullable_type(item_type)
        item_nullable = object_type is item_type
        is_awaitable = self.is_awaitable
        for item in value:
            if item is None:
                if not item_nullable:
                    return Undefined
            elif isinstance(item, Exception) or is_awaitable(item):
                return Undefined
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(value):
                if item is None:
                    completed.append(None)
                    continue
                item_path = path.add_key(index, None)
                try:
                    result = self.complete_object_directly(
                        object_type, field_details_list, item_path, item, position_context
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    result = None
                if is_awaitable(result):
                    result = self.await_completed(result, item_type, field_details_list, item_path)
                    awaitable_indices.append(index)
                completed.append(result)
        except Exception:
            self.settle_in_background([completed[index] for index in awaitable_indices])
            raise
        return with_awaited(completed, awaitable_indices)

    def complete_object_directly(
        self,
        object_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's object completion for a type without `is_type_of`."""
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        return self.execute_collected_subfields(
            object_type, value, path, grouped_field_set, new_defer_usages, position_context
        )

    def steps(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> list[Step]:
        """How each field of an object is executed: a plain leaf, a value, or as usual."""
        found: list[Step] = []
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            kind, plan = self.plan(parent_type, node.name.value)
            if node.arguments or any(details.node.directives for details in field_details_list):
                kind, plan = NO_PLAN
            found.append((response_name, field_details_list, kind, plan))
        return found

    def compiled_selection(
        self, parent_type: GraphQLObjectType, grouped: GroupedFieldSet
    ) -> CompiledSelection | None:
        """The selection's compiled completion (made once per selection), or None if not plain.

        Documents with directives are never compiled: an @include(if: $var) makes the same
        nodes select different fields under different variables.
        """
        key = (
            parent_type.name,
            tuple(
                (name, tuple(id(details.node) for details in details_list))
                for name, details_list in grouped.items()
            ),
        )
        nodes = tuple(details.node for details_list in grouped.values() for details in details_list)
        known = self.compiled.get(key)
        if known is not None and all(a is b for a, b in zip(known[0], nodes, strict=True)):
            return known[1]
        selection = None
        if self.direct and not self.has_directives():
            body = compile_selection(self, parent_type, grouped)
            selection = None if body is None else CompiledSelection(body)
        if len(self.compiled) >= COMPILED_SELECTIONS_KEPT:
            del self.compiled[next(iter(self.compiled))]
        self.compiled[key] = (nodes, selection)
        return selection

    def has_directives(self) -> bool:
        """Whether the operation or a fragment of its document uses a directive anywhere."""
        if self.document_directives is None:
            self.document_directives = has_directives(self.operation.selection_set) or any(
                has_directives(fragment.selection_set)
                for fragment in self.fragment_definitions.values()
            )
        return self.document_directives

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

    def plan(self, parent_type: GraphQLObjectType, field_name: str) -> FieldPlan:
        """How this field is executed: a plain leaf, a value completed directly, or OTHER."""
        key = (parent_type.name, field_name)
        plans = self.plans
        known = plans.get(key)
        if known is not None:
            return known
        plan = NO_PLAN
        field_def = parent_type.fields.get(field_name)
        if field_def is not None and not field_def.args:
            attribute = self.plain.get(key)
            field_type = field_def.type
            nullable = get_nullable_type(field_type)
            if isinstance(nullable, GraphQLScalarType | GraphQLEnumType):
                coerce = output_coercer(nullable)
                if attribute is not None:
                    non_null = isinstance(field_type, GraphQLNonNull)
                    plan = (LEAF, (attribute, nullable, non_null, coerce))
                elif field_def.resolve is not None:
                    plan = (VALUE, (field_def, None, field_type, coerce))
            elif directly_completed(nullable) and (
                attribute is not None or field_def.resolve is not None
            ):
                plan = (VALUE, (field_def, attribute, field_type, None))
        plans[key] = plan
        return plan


def with_awaited(values: Any, keys: list[Any]) -> Any:
    """`values` (an object's dict or a list), or an awaitable of it once its awaitables at
    `keys` have settled together (cancelling the others when one fails, as graphql-core does)."""
    if not keys:
        return values

    async def awaited() -> Any:
        settled = await gather_with_cancel(*(values[key] for key in keys))
        for key, value in zip(keys, settled, strict=True):
            values[key] = value
        return values

    return awaited()


def directly_completed(nullable: GraphQLOutputType) -> bool:
    """An object type without `is_type_of`, or a list of those (items null or not)."""
    if isinstance(nullable, GraphQLList):
        nullable = get_nullable_type(nullable.of_type)
    return isinstance(nullable, GraphQLObjectType) and nullable.is_type_of is None


# A selection whose compiled form falls back this often (and in over a quarter of its uses) is
# executed field by field from then on: its values are often awaitable, for instance.
FALLBACK_LIMIT = 16
COMPILED_SELECTIONS_KEPT = 512
# The inline type check of a built-in scalar's common Python type (the value is `v`).
INLINE_CHECKS: dict[GraphQLLeafType, str] = {
    GraphQLString: "type(v) is str",
    GraphQLID: "type(v) is str",
    GraphQLBoolean: "type(v) is bool",
    GraphQLInt: "type(v) is int and INT_MIN <= v <= INT_MAX",
    GraphQLFloat: "type(v) is float and isfinite(v)",
}
# A selection as known across requests: its object type and, per response name, the ids of its
# field nodes (from a cached document, so the same objects each time; kept to check identity).
SelectionKey = tuple[str, tuple[tuple[str, tuple[int, ...]], ...]]


class CompiledSelection:
    """One selection's generated completion, and how often it fell back."""

    __slots__ = ("body", "fallbacks", "run", "uses")

    def __init__(self, body: Callable[[Any], Any]) -> None:
        self.body = body  # FALLBACK or raises on the unusual; embedded by enclosing selections
        self.uses = 0
        self.fallbacks = 0

        def run(source: Any) -> Any:
            try:
                return body(source)
            except Exception:
                return FALLBACK

        self.run = run

    @property
    def enabled(self) -> bool:
        return self.fallbacks < FALLBACK_LIMIT or self.fallbacks * 4 < self.uses


def has_directives(selection_set: SelectionSetNode | None) -> bool:
    """Whether a field, fragment spread or inline fragment under it carries a directive."""
    if selection_set is None:
        return False
    return any(
        selection.directives or has_directives(getattr(selection, "selection_set", None))
        for selection in selection_set.selections
    )


def compile_selection(
    context: DirectExecutionContext, parent_type: GraphQLObjectType, grouped: GroupedFieldSet
) -> Callable[[Any], Any] | None:
    """A generated function completing `parent_type` with `grouped`, or None if not plain.

    The source is made of the templates below, attribute names checked to be identifiers and
    repr() of response and type names; every value it uses is bound by name, never spliced.
    """
    bound: dict[str, Any] = {
        "FALLBACK": FALLBACK,
        "Undefined": Undefined,
        "isfinite": math.isfinite,
        "is_awaitable": context.is_awaitable,
        "GeneratorType": GeneratorType,
        "INT_MIN": INT_MIN,
        "INT_MAX": INT_MAX,
    }

    def bind(value: Any) -> str:
        name = f"bound_{len(bound)}"
        bound[name] = value
        return name

    # The classes of sources seen to be neither exceptions nor awaitable (both are properties of
    # the class, except for generators): one set lookup per object instead of the two tests.
    bound["admitted"] = set()
    lines = [
        "def complete(src):",
        "    if type(src) not in admitted:",
        "        if isinstance(src, Exception) or is_awaitable(src):",
        "            return FALLBACK",
        "        if type(src) is not GeneratorType:",
        "            admitted.add(type(src))",
        "    r = {}",
    ]
    for response_name, details_list in grouped.items():
        field = _compiled_field(context, parent_type, response_name, details_list, bind)
        if field is None:
            return None
        lines.extend(field)
    lines.append("    return r")
    exec(compile("\n".join(lines), f"<selection on {parent_type.name}>", "exec"), bound)
    complete: Callable[[Any], Any] = bound["complete"]
    return complete


def _compiled_field(
    context: DirectExecutionContext,
    parent_type: GraphQLObjectType,
    response_name: str,
    details_list: FieldDetailsList,
    bind: Callable[[Any], str],
) -> list[str] | None:
    """The lines completing one field into `r`, or None when it is not plain."""
    node = details_list[0].node
    key = repr(response_name)
    if any(d.defer_usage is not None or d.fragment_variable_values for d in details_list):
        return None
    if node.name.value == "__typename":
        return [f"    r[{key}] = {parent_type.name!r}"]
    if node.arguments or any(details.node.directives for details in details_list):
        return None
    kind, plan = context.plan(parent_type, node.name.value)
    if kind is LEAF:
        attribute, leaf, non_null, coerce = cast(LeafPlan, plan)
        check = INLINE_CHECKS.get(leaf)
        if check is not None:
            complete = [
                f"        if not ({check}):",
                "            return FALLBACK",
                "        c = v",
            ]
        elif isinstance(leaf, GraphQLEnumType):
            # A member's name, remembered by the member's id: members live as long as their
            # class, so no other object can take that id. Only members are remembered (the
            # coercer answers Undefined for anything else).
            names = bind({})
            complete = [
                f"        c = {names}.get(id(v))",
                "        if c is None:",
                f"            c = {bind(coerce)}(v)",
                "            if c is Undefined or c is None:",
                "                return FALLBACK",
                f"            {names}[id(v)] = c",
            ]
        else:
            complete = [
                f"        c = {bind(coerce)}(v)",
                "        if c is Undefined or c is None:",
                "            return FALLBACK",
            ]
        return _read_then(attribute, key, non_null, complete)
    if kind is not VALUE:
        return None
    _, read, field_type, _ = cast(ValuePlan, plan)
    if read is None:
        return None  # resolved: its resolver may do anything
    attribute = read
    non_null = isinstance(field_type, GraphQLNonNull)
    nullable = get_nullable_type(field_type)
    item_type = nullable.of_type if isinstance(nullable, GraphQLList) else nullable
    object_type = get_nullable_type(item_type)
    if not isinstance(object_type, GraphQLObjectType):
        return None
    grouped, _, _ = context.collect_subfields(object_type, details_list)
    nested = context.compiled_selection(object_type, grouped)
    if nested is None:
        return None
    body = bind(nested.body)
    if item_type is nullable:  # one object
        complete = [
            f"        c = {body}(v)",
            "        if c is FALLBACK:",
            "            return FALLBACK",
        ]
        return _read_then(attribute, key, non_null, complete)
    on_null = "c.append(None)" if object_type is item_type else "return FALLBACK"
    complete = [
        "        if type(v) is not list and type(v) is not tuple:",
        "            return FALLBACK",
        "        c = []",
        "        for item in v:",
        "            if item is None:",
        f"                {on_null}",
        "                continue",
        f"            done = {body}(item)",
        "            if done is FALLBACK:",
        "                return FALLBACK",
        "            c.append(done)",
    ]
    return _read_then(attribute, key, non_null, complete)


def _read_then(attribute: str, key: str, non_null: bool, complete: list[str]) -> list[str] | None:
    """Read the attribute into `v`; null as the type allows; else `complete` sets `c`."""
    if not attribute.isidentifier() or keyword.iskeyword(attribute):
        return None
    return [
        f"    v = src.{attribute}",
        "    if v is None:",
        "        return FALLBACK" if non_null else f"        r[{key}] = None",
        "    else:",
        *complete,
        f"        r[{key}] = c",
    ]
