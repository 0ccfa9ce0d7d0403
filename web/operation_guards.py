"""Production guards on every operation: size, token, depth and alias limits; introspection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from graphql import ASTValidationRule, GraphQLError, ValidationContext, ValidationRule
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


class QuerySizeLimiter(SchemaExtension):
    """Refuses a document longer than `max_bytes` before it is parsed."""

    def __init__(self, max_bytes: int = MAX_QUERY_BYTES) -> None:
        self.max_bytes = max_bytes

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query or ""
        # Each character is at most 4 UTF-8 bytes: skip the encoding for short documents.
        if len(query) * 4 > self.max_bytes:
            size = len(query.encode())
            if size > self.max_bytes:
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
            context.result = GraphQLExecutionResult(
                data=None,
                errors=[
                    GraphQLError(
                        "subscriptions are served over WebSocket (graphql-transport-ws) "
                        "at /graphql, not over HTTP",
                        extensions={"code": GUARD_ERROR_CODE},
                    )
                ],
            )
        yield


def depth_rule(max_depth: int = MAX_DEPTH) -> type[ASTValidationRule]:
    """Strawberry's query-depth rule, minus its KeyError on a spread of an undefined fragment.

    That document is already refused by graphql-core's KnownFragmentNamesRule (BAD_USER_INPUT);
    without this wrapper the depth rule's crash would turn it into an INTERNAL error.
    """
    return _tolerate_undefined_fragments(create_depth_rule(max_depth, None))


def _tolerate_undefined_fragments(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    class Tolerant(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            try:
                rule(context)  # the depth rule does all its work in __init__
            except KeyError:
                pass  # undefined fragment: KnownFragmentNamesRule reports it

    return Tolerant


ExtensionFactory = Callable[[], SchemaExtension]


def guard_extensions(settings: Settings) -> list[ExtensionFactory]:
    """Factories of the guard extensions (fresh per operation), cheapest check first.

    The validation rule classes are built here, once per schema: ValidationCache keys on
    them, so classes made per request (Strawberry's limiter extensions) would never hit.
    The size cap and token limit run before the cache lookups, so a huge or unique document
    is refused (or parsed at most to the token limit) without growing either cache.
    """
    rules: list[type[ASTValidationRule]] = [depth_rule(MAX_DEPTH), alias_rule(MAX_ALIASES)]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return [
        QuerySizeLimiter,
        SubscriptionsOverWebSocket,
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(AddValidationRules, rules),
        partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ]


def graphiql_enabled(settings: Settings) -> bool:
    """GraphiQL needs introspection, so it is served exactly when introspection is on."""
    return settings.graphql_introspection
