"""`Subscription.alertCreated(after: ID)` over graphql-transport-ws, fed by the alert hub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from uuid import UUID

import strawberry
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from resolvers.context import Context
from resolvers.loaders import Loaders
from schema.alert import Alert, alert_from_row
from services.errors import ServiceError, Unauthenticated
from services.live import replay as alert_replay
from services.live.hub import AlertEvent, AlertHub, HubStopped, Subscriber

log = logging.getLogger(__name__)


async def authenticate_connection(context: Context) -> UnsetType:
    """`on_ws_connect`: the connection_init payload must carry a valid bearer token (else 4403)."""
    params = getattr(context, "connection_params", None)
    if isinstance(params, dict):
        value = params.get("Authorization", params.get("authorization"))
        if isinstance(value, str) and value.strip():
            context.authorization = value
    try:
        await context.require_user_id()
    except Unauthenticated:
        raise ConnectionRejectionError() from None
    return UNSET


def hub_of(context: Context) -> AlertHub:
    """The process's alert hub, started by the app lifespan."""
    hub = getattr(context.request.app.state, "alert_hub", None)
    if hub is None:
        raise ServiceError("alert subscriptions are not available on this server")
    assert isinstance(hub, AlertHub)
    return hub


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Your new alerts as they are written. With `after` (an alert id), first "
        "replays your alerts newer than it, then goes live: no gap, no duplicate."
    )
    async def alert_created(
        self, info: strawberry.Info[Context, None], after: strawberry.ID | None = None
    ) -> AsyncGenerator[Alert, None]:
        context = info.context
        user_id = await context.require_user_id()
        hub = hub_of(context)
        position = None
        if after is not None:
            position = await alert_replay.position_of(
                context.pool, user_id, alert_replay.parse_after(str(after))
            )
        # Refused here, as an error for this operation; the hub checks again when it registers.
        hub.check_room(user_id)
        # Live events come as SharedRender, which the executor unwraps to their Alert.
        return cast(AsyncGenerator[Alert, None], _stream(context, hub, user_id, position))


@dataclass(frozen=True, slots=True)
class SharedRender:
    """A live event's render cache and how to build its Alert, for the executor to consult."""

    # The user's subscriptions with the same document and variables select the same fields of
    # the same alert: the first to execute the event stores the result in `renders` and the
    # others answer with it (web/execution.py), so an alert is built and rendered once per
    # selection rather than once per socket.
    renders: dict[Any, Any]
    build: Callable[[], Alert]


async def _stream(
    context: Context, hub: AlertHub, user_id: UUID, position: int | None
) -> AsyncGenerator[Alert | SharedRender, None]:
    """Register first, then replay, then live events the replay did not already cover.

    Both follow commit order (commit_seq), so the live side drops exactly what the replay
    sent: anything at or below the last replayed position.

    A subscriber whose queue overflows is dropped by the hub at once (its backlog freed);
    this operation then ends with a SUBSCRIBER_TOO_SLOW error, and the client resumes with
    `after` = the last id it received.
    """
    try:
        subscriber = hub.subscribe(user_id)
    except HubStopped:  # the server is shutting down: end quietly
        return
    try:
        replayed_up_to = 0
        if position is not None:
            replayed_up_to = position
            async for row in alert_replay.replay(context.pool, user_id, position):
                replayed_up_to = row["commit_seq"]
                yield _fresh_alert(context, row)
        async for event in _live_events(subscriber, replayed_up_to, context.token_expires_at):
            yield SharedRender(event.renders, partial(_fresh_alert, context, event.row))
    except HubStopped:
        return
    except TokenExpired:
        # The connection was authorised by this token: it ends with it (the client reconnects
        # with a fresh one and resumes with `after`). Then wait to be cancelled: the closing
        # connection cancels its operations, whereas returning would make Strawberry send
        # `complete` on a socket that is already closed.
        await context.request.close(code=4403, reason="token expired")
        await asyncio.Event().wait()
    finally:
        subscriber.close()


class TokenExpired(Exception):
    """The subscription's token expired while it waited for alerts."""


async def _live_events(
    subscriber: Subscriber, replayed_up_to: int, expires_at: float | None
) -> AsyncIterator[AlertEvent]:
    """Routed events (rows read by the hub after commit) past the replayed position.

    Raises TokenExpired once `expires_at` (unix seconds) passes, even with no alert arriving:
    one timer per subscription closes the subscriber, rather than a deadline per wait.
    """
    expiry = None
    if expires_at is not None:
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, expires_at - time.time()), subscriber.fail, TokenExpired()
        )
    try:
        while True:
            event = await subscriber.get()
            if event.seq > replayed_up_to:
                yield event
    finally:
        if expiry is not None:
            expiry.cancel()


def _fresh_alert(context: Context, row: Any) -> Alert:
    """The event's Alert, resolved with new DataLoaders so no cache outlives one event."""
    context.loaders = cast(Loaders, _LazyLoaders(context.pool))
    return alert_from_row(row, context)


class _LazyLoaders:
    """A fresh `Loaders`, built on first use: most alert selections never load anything."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._loaders: Loaders | None = None

    def __getattr__(self, name: str) -> Any:
        if self._loaders is None:
            self._loaders = Loaders(self._pool)
        return getattr(self._loaders, name)
