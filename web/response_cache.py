"""A per-process cache of query answers that is never stale.

Each entry remembers the scopes its answer read and their version counters
(services/cache_versions.py); a request reads the current counters of those scopes (one
small statement) and is served from the cache only if they are unchanged. The counters are
bumped by triggers in the transactions that change the data, so after a write commits, on
any process, the next read of an answer that showed the changed rows misses, while answers
that did not show them stay cached. An answer is stored only under versions known to
predate its execution (web/graphql_app.py), so a write that lands during execution makes the
stored entry outdated at once rather than hiding the write.

Only queries whose root fields are all listed below are cached. Public fields are shared by
everyone; a query with any private field is cached per user, after the token is verified.
Answers with errors are never stored, and mutations and subscriptions never pass here.
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
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)

from web.operation_guards import MAX_TOKENS, oversized

# Root fields whose answer depends only on public data (its resolvers note which scopes). A
# field added under them that depends on the viewer (or on time) must come off this list.
PUBLIC_ROOT_FIELDS = frozenset({"searchStocks", "stock", "popularStocks", "__typename"})
# Root fields whose answer depends on public data and the viewer's own rows only. Not listed,
# so never cached: health (live checks) and recentAlertsCount (a sliding time window).
PRIVATE_ROOT_FIELDS = frozenset(
    {"me", "watchlist", "alerts", "alert", "alertStats", "webhooks", "deliveries"}
)
# Fields below public roots whose answer depends on the viewer: their presence anywhere in a
# document makes it private.
VIEWER_FIELDS = frozenset({"myAlerts"})
PLAN_CACHE_SIZE = 1_000


@dataclass(frozen=True)
class CachePlan:
    """How a document may be cached: shared by everyone, or per user."""

    public: bool
    operation_name: str | None = None


@dataclass
class _Entry:
    scopes: tuple[str, ...]
    versions: tuple[int, ...]
    data: dict[str, Any]
    size: int


class ResponseCache:
    """Query answers by (viewer or public, document, variables, operation, UTC date)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
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
        plan = _plan(query, operation_name)
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
    ) -> dict[str, Any] | None:
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
        return entry.data

    def put(
        self,
        key: tuple[str, ...],
        scopes: tuple[str, ...],
        versions: tuple[int, ...],
        data: dict[str, Any],
    ) -> None:
        """Store an answer; the least recently used leave first to stay within max_bytes."""
        # The key and bookkeeping, roughly, and each scope (~50 bytes as a str in a tuple).
        size = len(orjson.dumps(data)) + 256 + 64 * len(scopes)
        if size > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = _Entry(scopes, versions, data, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size


def _plan(query: str, operation_name: str | None) -> CachePlan | None:
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    operation = _operation(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    roots = _root_fields(operation.selection_set, fragments, depth=0)
    if roots is None or not roots:
        return None
    name = operation.name.value if operation.name else None
    if roots <= PUBLIC_ROOT_FIELDS:
        return CachePlan(public=not _mentions(document, VIEWER_FIELDS), operation_name=name)
    if roots <= PUBLIC_ROOT_FIELDS | PRIVATE_ROOT_FIELDS:
        return CachePlan(public=False, operation_name=name)
    return None


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name is not None and o.name.value == name]
    return named[0] if len(named) == 1 else None


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, SelectionSetNode], depth: int
) -> set[str] | None:
    """The names of the operation's root fields, through fragments; None when unclear."""
    if depth > 10:
        return None
    names: set[str] = set()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
            continue
        if isinstance(selection, InlineFragmentNode):
            nested = _root_fields(selection.selection_set, fragments, depth + 1)
        elif isinstance(selection, FragmentSpreadNode):
            target = fragments.get(selection.name.value)
            nested = None if target is None else _root_fields(target, fragments, depth + 1)
        else:
            nested = None
        if nested is None:
            return None
        names |= nested
    return names


def _mentions(document: DocumentNode, names: frozenset[str]) -> bool:
    """Whether any field of the document (fragments included) has one of `names`."""
    pending: list[SelectionSetNode] = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode) and selection.name.value in names:
                return True
            nested = getattr(selection, "selection_set", None)
            if nested is not None:
                pending.append(nested)
    return False
