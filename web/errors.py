"""Maps every GraphQL error to an `extensions.code`; unexpected ones are masked and logged.

ServiceError → its code and message. A database outage (services.db.database_outage) →
DATABASE_UNAVAILABLE, logged as a warning without a traceback. Errors with no path and no
cause (syntax, unknown field, wrong argument type, enum misuse, variable coercion) →
BAD_USER_INPUT with graphql-core's message. Anything else (a bug) → "Internal server
error" / INTERNAL; the exception is logged with the operation name and path, never sent.
Requests refused before execution (HTTP 400/405/413) get the same error shape.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.responses import JSONResponse
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from services.db import database_outage
from services.errors import ServiceError
from services.logs import escape_log_text

log = logging.getLogger("graphql.errors")

BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL = "INTERNAL"
INTERNAL_MESSAGE = "Internal server error"


def _causes(error: GraphQLError) -> list[BaseException]:
    """The chain of original errors under `error`, outermost first."""
    chain: list[BaseException] = []
    cause = error.original_error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.original_error if isinstance(cause, GraphQLError) else None
    return chain


def _set_code(error: GraphQLError, code: str, message: str | None = None) -> None:
    if message is not None:
        error.message = message
    error.extensions = {**(error.extensions or {}), "code": code}
    error.original_error = None  # classified; a second pass leaves it alone


def classify_error(error: GraphQLError, operation_name: str | None = None) -> str:
    """Give `error` its client-facing code and message in place; returns the code."""
    existing = (error.extensions or {}).get("code")
    chain = _causes(error)
    if operation_name is not None:
        operation_name = escape_log_text(operation_name)
    if existing and not chain:
        return str(existing)
    for cause in chain:
        if isinstance(cause, ServiceError) and cause.code != INTERNAL:
            _set_code(error, cause.code, cause.message)
            return cause.code
        if isinstance(cause, GraphQLError) and (cause.extensions or {}).get("code"):
            code = str((cause.extensions or {})["code"])
            _set_code(error, code, cause.message)
            return code
        outage = database_outage(cause)
        if outage is not None:
            log.warning(
                "database unavailable in operation %s: %s: %s",
                operation_name or "<anonymous>",
                type(cause).__name__,
                cause,
            )
            _set_code(error, outage.code, outage.message)
            return outage.code
    # No path and no foreign cause: graphql-core rejected the document or its variables.
    if error.path is None and (not chain or isinstance(chain[0], GraphQLError)):
        _set_code(error, BAD_USER_INPUT)
        return BAD_USER_INPUT
    log.error(
        "unexpected error in operation %s at %s: %s",
        operation_name or "<anonymous>",
        ".".join(str(p) for p in error.path or ()) or "<root>",
        error.message,
        exc_info=chain[-1] if chain else None,
    )
    _set_code(error, INTERNAL, INTERNAL_MESSAGE)
    return INTERNAL


def refusal_response(status: int, reason: str) -> JSONResponse:
    """A request refused before execution: its HTTP status and a GraphQL error body with a code.

    A 405 says which methods would work (RFC 9110). Nothing ran, so it costs (and is charged)
    nothing: `extensions.cost` is 0, as on every response.
    """
    body = {
        "errors": [{"message": reason, "extensions": {"code": BAD_USER_INPUT}}],
        "extensions": {"cost": 0},
    }
    headers = {"allow": "GET, POST"} if status == 405 else None
    return JSONResponse(body, status_code=status, headers=headers)


def classify_errors(errors: list[GraphQLError], operation_name: str | None = None) -> None:
    """`classify_error` for each error of a result."""
    for error in errors:
        classify_error(error, operation_name)


class AppSchema(strawberry.Schema):
    """Strawberry's Schema whose error hook classifies instead of logging every error.

    `process_errors` runs once per result on every path (parse and validation errors,
    extension failures, execution errors, subscription events), before the result is
    serialised, so mutating the errors here is what clients receive.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        operation_name: Any = execution_context.operation_name if execution_context else None
        classify_errors(errors, operation_name)

    async def stream(self, *args: Any, **kwargs: Any) -> StreamResult:
        """Strawberry's, with errors raised while parsing answered as a pre-execution error.

        Over HTTP Strawberry catches what an on_parse extension raises (the size and token
        limits, a syntax error from the parser cache); in a stream (the WebSocket) it escaped
        the operation's task, which logged a traceback and sent `complete` with no error.
        """
        return _parse_errors_as_results(await super().stream(*args, **kwargs))


async def _parse_errors_as_results(results: StreamResult) -> StreamResult:
    async with aclosing(results):
        try:
            async for result in results:
                yield result
        except GraphQLError as error:
            classify_error(error)
            yield PreExecutionError(data=None, errors=[error])
