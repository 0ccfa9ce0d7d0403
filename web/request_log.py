"""One log line and one counted metric per HTTP request, with a request id on every line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from services.logs import LOG_TEXT_MAX_CHARS, add_log_context, log_context
from web import metrics

log = logging.getLogger("web.requests")

REQUEST_ID_HEADER = "x-request-id"
# A client's id is reused only when it cannot smuggle anything into a log line or a header.
_USABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new random one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _USABLE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestLog:
    """Binds a request id for the request's log lines, echoes it, logs and counts the outcome.

    The outermost middleware, so what it records is what the client got (a 413 from the body
    cap, a 500 when the app raised).
    """

    ROUTES = frozenset({"/graphql", "/api/health", "/metrics"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope["path"]
                route = path if path in self.ROUTES else "other"
                metrics.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
                if log.isEnabledFor(logging.INFO):
                    _log_request(scope, status, started)


def _log_request(scope: Scope, status: int, started: float) -> None:
    # The path only: a query string may carry a GET operation's variables.
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    log.info(
        "%s %s %d %.1f ms",
        scope["method"],
        scope["path"],
        status,
        duration_ms,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": duration_ms,
        },
    )


class OperationLogExtension(SchemaExtension):
    """Names the GraphQL operation on the request's log lines."""

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        finally:
            add_log_context(operation=self._operation_name())

    def _operation_name(self) -> str | None:
        try:
            name = self.execution_context.operation_name
        except Exception:
            return None  # a document that did not parse has no operation to name
        return name[:LOG_TEXT_MAX_CHARS] if isinstance(name, str) else None
