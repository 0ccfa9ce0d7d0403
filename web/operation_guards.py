"""Production guards on every operation: size, token, depth and alias limits; introspection."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial

from graphql import (
    BREAK,
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    Visitor,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.websockets import WebSocket
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as create_depth_rule
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from services.settings import Settings

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000
# Checked before the lexer runs, so a huge document (comments, one giant string) costs nothing.
MAX_QUERY_BYTES = 32 * 1024
# Whole HTTP request body (query + variables); enforced by web/body_limit.py before JSON parsing.
MAX_REQUEST_BYTES = 1024 * 1024
GUARD_ERROR_CODE = "BAD_USER_INPUT"
# Distinct documents whose parse and validation results are kept (LRU, per process); bounded
# so a client sending unique queries cannot grow memory.
DOCUMENT_CACHE_SIZE = 256


def oversized(query: str, max_bytes: int = MAX_QUERY_BYTES) -> int | None:
    """The document's size in bytes when it is over `max_bytes`, else None."""
    # Each character is at most 4 UTF-8 bytes: skip the encoding for short documents.
    if len(query) * 4 <= max_bytes:
        return None
    size = len(query.encode())
    return size if size > max_bytes else None


class QuerySizeLimiter(SchemaExtension):
    """Refuses a document longer than `max_bytes` before it is parsed."""

    def __init__(self, max_bytes: int = MAX_QUERY_BYTES) -> None:
        self.max_bytes = max_bytes

    def on_parse(self) -> Iterator[None]:
        size = oversized(self.execution_context.query or "", self.max_bytes)
        if size is not None:
            raise GraphQLError(
                f"query is {size} bytes; the limit is {self.max_bytes}",
                extensions={"code": GUARD_ERROR_CODE},
            )
        yield


class SubscriptionsOverWebSocket(SchemaExtension):
    """A subscription sent over HTTP is BAD_USER_INPUT, not a confusing null-field INTERNAL.

    Strawberry lets POST carry subscriptions (for its multipart protocol); graphql-core would
    then run the resolver as a plain field. We serve them over graphql-transport-ws only.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        request = getattr(context.context, "request", None)
        if context.operation_type is OperationType.SUBSCRIPTION and not isinstance(
            request, WebSocket
        ):
            _refuse(
                context,
                "subscriptions are served over WebSocket (graphql-transport-ws) "
                "at /graphql, not over HTTP",
            )
        yield


class NoNulText(SchemaExtension):
    """Refuses U+0000 in any string argument, literal or variable, before execution.

    PostgreSQL cannot store it in text, so it would otherwise surface as a database error
    (INTERNAL) in whichever field first passes it to SQL. A document can only carry it as a
    `\\u` escape (the lexer refuses a raw NUL), so most documents skip the AST walk.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query or ""
        document = context.graphql_document
        in_document = "\\u" in query and document is not None and _has_nul_literal(document)
        if in_document or _has_nul_value(context.variables):
            _refuse(context, "text must not contain NUL (U+0000) characters")
        yield


# graphql-core appends its suggestions to the message: " Did you mean 'x', or 'y'?"
_SUGGESTION = re.compile(r" Did you mean .*\?$", re.DOTALL)


class NoSuggestions(SchemaExtension):
    """Without introspection, errors do not suggest names: they would reveal the schema."""

    def on_validate(self) -> Iterator[None]:
        yield
        _strip_suggestions(self.execution_context.pre_execution_errors)

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        _strip_suggestions(getattr(result, "errors", None))


def _strip_suggestions(errors: list[GraphQLError] | None) -> None:
    for error in errors or ():
        if "Did you mean" in error.message:
            error.message = _SUGGESTION.sub("", error.message)


def _refuse(context: ExecutionContext, message: str) -> None:
    """Answer the operation with one BAD_USER_INPUT error instead of executing it."""
    error = GraphQLError(message, extensions={"code": GUARD_ERROR_CODE})
    context.result = GraphQLExecutionResult(data=None, errors=[error])


def _has_nul_literal(document: DocumentNode) -> bool:
    found = False

    class Finder(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: object) -> object:
            nonlocal found
            if "\x00" in node.value:
                found = True
                return BREAK
            return None

    visit(document, Finder())
    return found


def _has_nul_value(value: object) -> bool:
    """Any string in a decoded JSON value (iterative: variables may nest 1,024 deep)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def depth_rule(max_depth: int = MAX_DEPTH) -> type[ASTValidationRule]:
    """Strawberry's query-depth rule, minus its crashes on documents that are refused anyway.

    A spread of an undefined fragment (KeyError) is refused by graphql-core's
    KnownFragmentNamesRule, an empty selection set (ValueError from max()) by
    NonEmptySelectionSets; both are BAD_USER_INPUT. Without this wrapper the depth rule's
    crash would turn them into an INTERNAL error.
    """
    return _tolerate_invalid_documents(create_depth_rule(max_depth, None))


def _tolerate_invalid_documents(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    class Tolerant(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            try:
                rule(context)  # the depth rule does all its work in __init__
            except (KeyError, ValueError):
                pass  # undefined fragment or empty selection set: another rule reports it

    return Tolerant


class NonEmptySelectionSets(ValidationRule):
    """`{ }` selects nothing: a syntax error in the GraphQL spec, but graphql-core 3.3 parses it."""

    def enter_selection_set(self, node: SelectionSetNode, *_args: object) -> None:
        if not node.selections:
            self.report_error(GraphQLError("a selection set must select at least one field", node))


ExtensionFactory = Callable[[], SchemaExtension]


def guard_extensions(settings: Settings) -> list[ExtensionFactory]:
    """Factories of the guard extensions (fresh per operation), cheapest check first.

    The validation rule classes are built here, once per schema: ValidationCache keys on
    them, so classes made per request (Strawberry's limiter extensions) would never hit.
    The size cap and token limit run before the cache lookups, so a huge or unique document
    is refused (or parsed at most to the token limit) without growing either cache.
    """
    rules: list[type[ASTValidationRule]] = [
        NonEmptySelectionSets,
        depth_rule(MAX_DEPTH),
        alias_rule(MAX_ALIASES),
    ]
    quiet: list[ExtensionFactory] = []
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
        quiet.append(NoSuggestions)
    return [
        *quiet,
        QuerySizeLimiter,
        SubscriptionsOverWebSocket,
        NoNulText,
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(AddValidationRules, rules),
        partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ]


def graphiql_enabled(settings: Settings) -> bool:
    """GraphiQL needs introspection, so it is served exactly when introspection is on."""
    return settings.graphql_introspection
