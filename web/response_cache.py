"""A per-process cache of query answers that is never stale.

Each entry remembers the scopes its answer read and their version counters
(services/cache_versions.py); a request reads the current counters of those scopes (one
small statement) and is served from the cache only if they are unchanged. The counters are
bumped by triggers in the transactions that change the data, so after a write commits, on
any process, the next read of an answer that showed the changed rows misses, while answers
that did not show them stay cached. An answer is stored only under versions known to
predate its execution (web/graphql_app.py), so a write that lands during execution makes the
stored entry outdated at once rather than hiding the write.

Which answers may be shared comes from the schema: a field declares `@cacheScope(scope:
VIEWER)` when its answer depends on the signed-in user, `UNCACHED` when it is live or relative to
the current time (schema/cache_scope.py). A query that selects (through any fragment) an
UNCACHED field is never cached; one that selects a VIEWER field is cached per user, after the
token is verified; any other query is public and shared by everyone. A query that selects a
WATCHER_COUNTS field also reads the watcher count of every stock its answer shows. Answers
with errors are never stored, and mutations and subscriptions never pass here.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_directive_values,
    get_named_type,
    parse,
)

from schema.cache_scope import DIRECTIVE_NAME, CacheScope
from web.operation_guards import MAX_TOKENS, oversized

# (type name, field name) → the scope a field declares; fields not listed are public.
FieldScopes = dict[tuple[str, str], CacheScope]
PLAN_CACHE_SIZE = 1_000


@dataclass(frozen=True)
class CachePlan:
    """How a document may be cached: shared by everyone, or per user."""

    public: bool
    operation_name: str | None = None
    # It selects a watcher count: the answer also reads each shown stock's count.
    watcher_counts: bool = False


@dataclass
class _Entry:
    scopes: tuple[str, ...]
    versions: tuple[int, ...]
    answer: CachedAnswer
    size: int


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer's data, encoded once, and the static cost of its operation."""

    # The answer's `data` as JSON: a hit's response embeds these bytes as they are (see
    # `data`), so a hit neither walks nor encodes the answer again, and an entry holds compact
    # bytes rather than a tree of Python objects.
    encoded: bytes
    # Charged again on every hit without costing the document anew (None: not known).
    cost: int | None = None

    def data(self) -> Any:
        """The response's `data`: an orjson Fragment, written verbatim where it is encoded."""
        return orjson.Fragment(self.encoded)


class ResponseCache:
    """Query answers by (viewer or public, document, variables, operation, UTC date)."""

    def __init__(self, max_bytes: int, schema: GraphQLSchema) -> None:
        self.max_bytes = max_bytes
        self.schema = schema
        self.field_scopes = field_scopes(schema)
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._plans: OrderedDict[tuple[str, str | None], CachePlan | None] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def plan(self, query: str | None, operation_name: str | None) -> CachePlan | None:
        """Whether (and how) this document's answer may be cached; None: never.

        Runs before the schema's guards: a document they would refuse (too many bytes or
        tokens) is neither lexed in full nor remembered here.
        """
        if query is None or oversized(query) is not None:
            return None
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = _plan(self.schema, self.field_scopes, query, operation_name)
        self._plans[key] = plan
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    @staticmethod
    def key(
        viewer: str, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> tuple[str, ...] | None:
        """The entry key, or None (not cached) when orjson cannot write the variables.

        orjson writes at most 254 levels of nesting; the request parser admits 1,024. The date
        is in the key because default windows (prices) are relative to today.
        """
        try:
            encoded = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        return (
            viewer,
            hashlib.sha256(query.encode()).hexdigest(),
            encoded.decode(),
            operation_name or "",
            datetime.now(UTC).date().isoformat(),
        )

    def scopes(self, key: tuple[str, ...]) -> tuple[str, ...] | None:
        """The scopes the stored answer read, or None when nothing is stored."""
        entry = self._entries.get(key)
        return None if entry is None else entry.scopes

    def get(
        self, key: tuple[str, ...], scopes: tuple[str, ...], versions: tuple[int, ...]
    ) -> CachedAnswer | None:
        """The stored answer if it read exactly these scopes at exactly these versions."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.scopes != scopes:
            return None  # replaced since the caller looked: not this reading's to judge
        if entry.versions != versions:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(
        self,
        key: tuple[str, ...],
        scopes: tuple[str, ...],
        versions: tuple[int, ...],
        data: dict[str, Any],
        cost: int | None = None,
    ) -> None:
        """Store an answer; the least recently used leave first to stay within max_bytes."""
        encoded = orjson.dumps(data)
        # The key and bookkeeping, roughly, and each scope (~50 bytes as a str in a tuple).
        size = len(encoded) + 256 + 64 * len(scopes)
        if size > self.max_bytes:
            return
        self._drop(key)
        answer = CachedAnswer(encoded, cost)
        self._entries[key] = _Entry(scopes, versions, answer, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size


def field_scopes(schema: GraphQLSchema) -> FieldScopes:
    """The scope each field of `schema` declares with @cacheScope (read from its SDL nodes)."""
    directive = schema.get_directive(DIRECTIVE_NAME)
    if directive is None:
        return {}
    scopes: FieldScopes = {}
    for type_name, named_type in schema.type_map.items():
        for field_name, field in (getattr(named_type, "fields", None) or {}).items():
            node = field.ast_node
            values = None if node is None else get_directive_values(directive, node)
            if values is not None:
                scopes[(type_name, field_name)] = CacheScope(values["scope"])
    return scopes


def _plan(
    schema: GraphQLSchema, scopes: FieldScopes, query: str, operation_name: str | None
) -> CachePlan | None:
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    operation = _operation(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.query_type
    if root is None:
        return None
    selected = _selected_scopes(schema, scopes, fragments, root, operation.selection_set)
    if selected is None or CacheScope.UNCACHED in selected:
        return None
    name = operation.name.value if operation.name else None
    return CachePlan(
        public=CacheScope.VIEWER not in selected,
        operation_name=name,
        watcher_counts=CacheScope.WATCHER_COUNTS in selected,
    )


def _selected_scopes(
    schema: GraphQLSchema,
    scopes: FieldScopes,
    fragments: dict[str, FragmentDefinitionNode],
    root: GraphQLNamedType,
    selection_set: SelectionSetNode,
) -> set[CacheScope] | None:
    """The scopes of every field the selection reaches (through fragments); None: unknown.

    Unknown: a field or type the schema does not have (validation refuses the document) or
    introspection beyond __typename (left to execution, never cached).
    """
    found: set[CacheScope] = set()
    pending: list[tuple[GraphQLNamedType, SelectionSetNode]] = [(root, selection_set)]
    spread: set[str] = set()  # each fragment is walked once: its fields do not depend on where
    while pending:
        parent, selections = pending.pop()
        fields = getattr(parent, "fields", None) or {}
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name == "__typename":
                    continue
                field = fields.get(name)
                if field is None:
                    return None
                scope = scopes.get((parent.name, name))
                if scope is not None:
                    found.add(scope)
                if selection.selection_set is not None:
                    pending.append((get_named_type(field.type), selection.selection_set))
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = parent if condition is None else schema.get_type(condition.name.value)
                if target is None:
                    return None
                pending.append((target, selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment_name = selection.name.value
                fragment = fragments.get(fragment_name)
                if fragment is None:
                    return None
                target = schema.get_type(fragment.type_condition.name.value)
                if target is None:
                    return None
                if fragment_name not in spread:
                    spread.add(fragment_name)
                    pending.append((target, fragment.selection_set))
            else:
                return None
    return found


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name is not None and o.name.value == name]
    return named[0] if len(named) == 1 else None
