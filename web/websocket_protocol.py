"""graphql-transport-ws with every client message checked for shape before Strawberry reads it.

Strawberry's handler indexes messages as it finds them: a frame that is JSON but not an
object, or a `subscribe` whose payload or query has the wrong type, raised TypeError inside
the connection task, and the socket dropped without a close frame. The protocol says an
invalid message closes the socket with 4400; this handler does that, and gives the error for
one operation too many a code like every other error.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message,
    SubscribeMessage,
)

from resolvers.context import Context
from web.errors import BAD_USER_INPUT
from web.websocket_limits import TOKEN_EXPIRED, expired

_OPTIONAL_OBJECT = (dict, type(None))
_OPTIONAL_STRING = (str, type(None))


def invalid_message_reason(message: object) -> str | None:
    """Why `message` is not a well-formed graphql-transport-ws client message, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string `type`"
    kind = message["type"]
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"a {kind} message needs a string `id`"
    if kind in ("connection_init", "ping", "pong") and not isinstance(
        message.get("payload"), _OPTIONAL_OBJECT
    ):
        return f"a {kind} payload must be an object"
    if kind != "subscribe":
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "a subscribe payload must be an object with a string `query`"
    if not isinstance(payload.get("variables"), _OPTIONAL_OBJECT) or not isinstance(
        payload.get("extensions"), _OPTIONAL_OBJECT
    ):
        return "subscribe `variables` and `extensions` must be objects"
    if not isinstance(payload.get("operationName"), _OPTIONAL_STRING):
        return "subscribe `operationName` must be a string"
    return None


class CheckedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler behind a message shape check (close 4400)."""

    async def handle_message(self, message: Message) -> None:
        reason = invalid_message_reason(message)
        if reason is not None:
            await self.handle_invalid_message(reason)
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and expired(
            getattr(self.context, "token_expires_at", None)
        ):
            # The timer closes it at expiry; this covers an operation that arrives first.
            await self.websocket.close(TOKEN_EXPIRED, "token expired")
            return
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            # Strawberry's own refusal has no extensions.code.
            error = GraphQLError(
                f"at most {limit} operations may be in flight on one connection",
                extensions={"code": BAD_USER_INPUT},
            )
            payload: Any = [error.formatted]
            await self.send_message({"id": message["id"], "type": "error", "payload": payload})
            return
        await super().handle_subscribe(message)
