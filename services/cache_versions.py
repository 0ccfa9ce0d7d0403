"""Version counters of cached API answers, bumped by triggers in the writing transactions.

`public` changes with anything a public field can show; `user:<id>` with that user's own
rows. A cached answer is served only while the counters it was built under are unchanged
(see migrations/0005_cache_versions.sql for what bumps what).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

PUBLIC = "public"

_READ_SQL = "SELECT scope, version FROM cache_versions WHERE scope = ANY($1::text[])"


def user_scope(user_id: UUID) -> str:
    """The scope of one user's own data."""
    return f"user:{user_id}"


class Fetcher(Protocol):
    """What the reader needs of a pool or connection."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def read(db: Fetcher, scopes: Sequence[str]) -> tuple[int, ...]:
    """The current version of each scope, in order (0 for a scope never bumped)."""
    found = await _read_all(db, scopes)
    return tuple(found.get(scope, 0) for scope in scopes)


async def _read_all(db: Fetcher, scopes: Sequence[str]) -> dict[str, int]:
    return {row["scope"]: row["version"] for row in await db.fetch(_READ_SQL, list(scopes))}


class _Batch:
    def __init__(self) -> None:
        self.scopes: set[str] = set()
        self.found: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        # Every reader may have been cancelled before the answer arrives: never "unretrieved".
        self.found.add_done_callback(lambda done: done.cancelled() or done.exception())


class CoalescingReader:
    """`read` for many concurrent requests with one statement per event-loop turn.

    Requests that ask during the same turn (a burst of cache hits under load) share one
    query, sent on the next turn. A request only ever joins a batch that has not been sent,
    so its answer includes every write committed before it asked: read-after-write holds
    exactly as with a query of its own.
    """

    def __init__(self, db: Fetcher) -> None:
        self.db = db
        self._gathering: _Batch | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def read(self, scopes: Sequence[str]) -> tuple[int, ...]:
        """The current version of each scope, in order (0 for a scope never bumped)."""
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch()
            asyncio.get_running_loop().call_soon(self._send, batch)
        batch.scopes.update(scopes)
        # Shielded: one cancelled request must not cancel the query its neighbours wait for.
        found = await asyncio.shield(batch.found)
        return tuple(found.get(scope, 0) for scope in scopes)

    def _send(self, batch: _Batch) -> None:
        self._gathering = None  # from here on, newcomers gather the next batch
        task = asyncio.create_task(self._fetch(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _fetch(self, batch: _Batch) -> None:
        try:
            found = await _read_all(self.db, sorted(batch.scopes))
        except BaseException as exc:
            if not batch.found.done():
                batch.found.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not batch.found.done():
                batch.found.set_result(found)
