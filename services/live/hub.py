"""Per-process fan-out of `alert_created` notifications to bounded per-subscriber queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from services.alerts import ALERT_SELECT
from services.db import CONNECT_TIMEOUT_SECONDS
from services.errors import RateLimited, ServiceError
from services.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "alert_created"
APPLICATION_NAME_PREFIX = "material-changes-alert-hub"
RESOLVE_BATCH = 1000

# Full rows (alert plus entity columns, what schema.alert builds an Alert from) of the users
# subscribed here, committed after the last one routed and up to a visible high-water mark.
# commit_seq follows commit order (migrations/0008): every number at or below the highest
# visible one is visible or rolled back, so reading up to it skips nothing, with no window.
# A notification only says "something committed"; a burst of thousands of alerts is one
# wake-up and a few range reads here, whatever its size.
ROUTE_SQL = (
    ALERT_SELECT
    + """WHERE a.commit_seq > $1 AND a.commit_seq <= $2 AND a.user_id = ANY($3::uuid[])
ORDER BY a.commit_seq
LIMIT $4
"""
)

LAST_SEQ_SQL = "SELECT coalesce(max(commit_seq), 0) FROM alert_history"


@dataclass(frozen=True)
class AlertEvent:
    """A committed alert as the hub routes it, with its row as read after the commit."""

    id: UUID
    user_id: UUID
    seq: int
    row: Mapping[str, Any] = field(repr=False, compare=False)
    # What the API renders from this event once for all the user's subscriptions that select
    # the same fields, by what it knows a selection by; it lives as long as some subscriber
    # still holds the event.
    renders: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)


class SubscriberTooSlow(ServiceError):
    """The subscriber's queue overflowed; it was dropped rather than allowed to grow."""

    code = "SUBSCRIBER_TOO_SLOW"


class HubStopped(Exception):
    """The hub shut down; the subscription ends."""


_CLOSED = object()


class Subscriber:
    """One live subscription: a bounded queue of this user's alert events."""

    def __init__(
        self,
        hub: AlertHub,
        user_id: UUID,
        maxsize: int,
        on_overflow: Callable[[Subscriber], None] | None,
    ) -> None:
        self.hub = hub
        self.user_id = user_id
        # One slot more than the limit so the close marker always fits.
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize + 1)
        self._limit = maxsize
        self._on_overflow = on_overflow
        self._error: Exception | None = None

    @property
    def closed(self) -> bool:
        return self._error is not None

    def offer(self, event: AlertEvent) -> None:
        """Enqueue without waiting; a full queue closes the subscriber with an error."""
        if self._error is not None:
            return
        if self._queue.qsize() >= self._limit:
            self.fail(SubscriberTooSlow(f"subscriber fell more than {self._limit} alerts behind"))
            if self._on_overflow is not None:
                self._on_overflow(self)
            return
        self._queue.put_nowait(event)

    async def get(self) -> AlertEvent:
        """The next event; raises SubscriberTooSlow or HubStopped once closed."""
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay closed for later calls
            assert self._error is not None
            raise self._error
        event: AlertEvent = item
        return event

    def get_nowait(self) -> AlertEvent | None:
        """The next queued event without waiting, or None (closure is reported by get)."""
        if self._queue.empty():
            return None
        item = self._queue.get_nowait()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            return None
        event: AlertEvent = item
        return event

    def close(self) -> None:
        """Unregister (idempotent)."""
        self.hub.unsubscribe(self)
        if self._error is None:
            self._error = HubStopped("subscription closed")

    def fail(self, error: Exception) -> None:
        """Close with `error`: unregister, drop the backlog, wake the reader."""
        self._error = error
        self.hub.unsubscribe(self)
        while not self._queue.empty():  # free the backlog now, not when the client reads
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AlertHub:
    """One LISTEN connection per process; on each wake-up routes what committed since, in order."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        *,
        queue_size: int = 256,
        max_per_user: int | None = None,
        keepalive_seconds: float = 10.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self.queue_size = queue_size
        self.max_per_user = max_per_user
        self.application_name = f"{APPLICATION_NAME_PREFIX}-{os.getpid()}"
        self._keepalive = keepalive_seconds
        self._max_backoff = max_backoff_seconds
        self._subscribers: dict[UUID, set[Subscriber]] = {}
        # Set by a notification or a reconnect: something may have committed since.
        self._behind = False
        self._pending_ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The commit_seq of the last alert routed: everything at or below it has been routed
        # (or belongs to nobody subscribed), so it is both the catch-up point and the filter
        # that drops a row seen twice (by a catch-up and by its notification).
        self._last_seq = 0
        self.reconnects = 0

    @classmethod
    def from_settings(cls, dsn: str, pool: asyncpg.Pool, settings: Settings) -> AlertHub:
        """A hub sized by ALERT_SUBSCRIBER_QUEUE and WS_MAX_SUBSCRIPTIONS_PER_USER."""
        return cls(
            dsn,
            pool,
            queue_size=settings.alert_subscriber_queue,
            max_per_user=settings.ws_max_subscriptions_per_user,
        )

    # -- subscribers -------------------------------------------------------------------

    def subscribe(
        self, user_id: UUID, on_overflow: Callable[[Subscriber], None] | None = None
    ) -> Subscriber:
        """Register a subscriber for `user_id`; events routed from now on are queued.

        RateLimited when the user already has `max_per_user` subscribers in this process.
        """
        if not self._tasks:
            raise HubStopped("alert hub is not running")
        self.check_room(user_id)
        subscriber = Subscriber(self, user_id, self.queue_size, on_overflow)
        self._subscribers.setdefault(user_id, set()).add(subscriber)
        return subscriber

    def check_room(self, user_id: UUID) -> None:
        """RateLimited when `user_id` may not add another subscriber."""
        limit = self.max_per_user
        if limit is not None and len(self._subscribers.get(user_id, ())) >= limit:
            raise RateLimited(f"at most {limit} subscriptions per user at a time")

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = self._subscribers.get(subscriber.user_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._subscribers[subscriber.user_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and LISTEN (raising if the database is unreachable), then run in background."""
        await self._connect()
        # Taken after LISTEN: what commits later is notified. Nobody is subscribed yet.
        self._last_seq = await self._pool.fetchval(LAST_SEQ_SQL)
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="alert-hub-listen"),
            asyncio.create_task(self._resolve_forever(), name="alert-hub-resolve"),
        ]

    async def stop(self) -> None:
        """Stop listening and end every subscription."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._disconnect()
        for group in list(self._subscribers.values()):
            for subscriber in list(group):
                subscriber.fail(HubStopped("server is shutting down"))
        self._subscribers.clear()

    async def _connect(self) -> None:
        self._lost.clear()
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": self.application_name},
            timeout=CONNECT_TIMEOUT_SECONDS,
        )
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_terminated)
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn.terminate()

    async def _listen_forever(self) -> None:
        """Keep the LISTEN connection alive; reconnect with backoff and catch up when it drops."""
        while True:
            await self._watch_connection()
            await self._disconnect()
            log.warning("alert listener connection lost; reconnecting")
            await self._reconnect_with_backoff()

    async def _watch_connection(self) -> None:
        """Return when the connection is lost (terminated, or a keepalive fails)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._keepalive)
            if self._lost.is_set() or self._conn is None:
                return
            try:
                await self._conn.fetchval("SELECT 1", timeout=self._keepalive)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                return

    async def _reconnect_with_backoff(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("alert listener reconnect failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, self._max_backoff)
                continue
            self.reconnects += 1
            log.info("alert listener reconnected")
            # Listening again: whatever committed while nobody listened is read from where
            # routing stopped, so every subscriber still sees commit order.
            self._wake()
            return

    def _on_terminated(self, conn: Any) -> None:
        self._lost.set()

    # -- routing -------------------------------------------------------------------------

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._wake()

    def _wake(self) -> None:
        self._behind = True
        self._pending_ready.set()

    async def _resolve_forever(self) -> None:
        """Route what committed since the last wake-up, in commit order, until caught up."""
        delay = 0.05
        while True:
            await self._pending_ready.wait()
            self._pending_ready.clear()
            while self._behind:
                self._behind = False
                try:
                    await self._catch_up()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    log.warning("routing committed alerts failed; retrying", exc_info=True)
                    self._behind = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
                delay = 0.05

    async def _catch_up(self) -> None:
        high: int = await self._pool.fetchval(LAST_SEQ_SQL)
        while self._last_seq < high:
            users = list(self._subscribers)
            if not users:
                break
            rows = await self._pool.fetch(ROUTE_SQL, self._last_seq, high, users, RESOLVE_BATCH)
            self._route(rows)
            if len(rows) < RESOLVE_BATCH:
                break
        # Everything up to `high` is routed or belongs to nobody subscribed when it was read.
        self._last_seq = max(self._last_seq, high)

    def _route(self, rows: Iterable[Any]) -> None:
        for row in rows:
            seq = row["commit_seq"]
            if seq <= self._last_seq:
                continue  # routed already: the catch-up read it before its notification
            self._last_seq = seq
            event = AlertEvent(row["id"], row["user_id"], seq, row)
            for subscriber in list(self._subscribers.get(event.user_id, ())):
                subscriber.offer(event)
