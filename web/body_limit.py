"""HTTP-level guard: caps the request body before JSON parsing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import refusal_response
from web.operation_guards import MAX_REQUEST_BYTES


class RequestGuard:
    """Caps the request body (413 before JSON parsing)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send)
        except _BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body exceeds {self.max_body_bytes} bytes"
        await refusal_response(413, message)(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the cap."""
