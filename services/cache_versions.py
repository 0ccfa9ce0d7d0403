"""Version counters of cached API answers, bumped by triggers in the writing transactions.

A cached answer depends on the scopes it read: `user:<id>` (the viewer's own rows),
`stock:<entity>` (each stock it shows), `watchers:<entity>` (each watcherCount it shows),
`stocks` and the `popularity:<n>` shards (lists whose membership depends on every stock) and
`public` (every answer; bumped only by a TRUNCATE). It is served only while the counters of
exactly those scopes are unchanged (see migrations/0009_cache_scopes.sql for what bumps what).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol
from uuid import UUID

PUBLIC = "public"
STOCKS = "stocks"
# As many as cache_popularity_scope() in migrations/0009_cache_scopes.sql hashes into.
POPULARITY_SHARDS = 16
POPULARITY = tuple(f"popularity:{n}" for n in range(POPULARITY_SHARDS))

# The snapshot comes with every read: a miss executed after it can tell which later bumps its
# answer may have missed (settled_versions). Every cache hit runs this with one scope per
# stock shown (100 for a 50-item watchlist with watcher counts), so the scopes go in as one
# space-separated text and the versions come back as one array in the same order: a text and
# an int8[] for asyncpg to convert, not 100 array elements and 100 rows.
SCOPE_SEPARATOR = " "
_READ_SQL = """
SELECT pg_current_snapshot()::text AS snapshot,
       ARRAY(SELECT coalesce(c.version, 0)
             FROM unnest(string_to_array($1::text, $2::text)) WITH ORDINALITY AS s(scope, n)
             LEFT JOIN cache_versions c ON c.scope = s.scope
             ORDER BY s.n) AS versions
"""
_SETTLED_SQL = """
SELECT scope, version, coalesce(pg_visible_in_snapshot(bumped_by, $2::text::pg_snapshot), true)
           AS settled
FROM cache_versions WHERE scope = ANY($1::text[])
"""


def user_scope(user_id: UUID) -> str:
    """The scope of one user's own data."""
    return f"user:{user_id}"


def stock_scope(entity_id: UUID) -> str:
    """The scope of one stock: its entity row, signals and backfill jobs."""
    return f"stock:{entity_id}"


def watchers_scope(entity_id: UUID) -> str:
    """The scope of one stock's watcher count."""
    return f"watchers:{entity_id}"


class ReadScopes:
    """The scopes one request's answer read, noted by the resolvers while it executes."""

    def __init__(self, scopes: Iterable[str] = (), *, watcher_counts: bool = False) -> None:
        self.scopes: set[str] = set(scopes)
        # The query selects a watcher count: each shown stock's count is part of the answer.
        self.watcher_counts = watcher_counts

    def add(self, scopes: Iterable[str]) -> None:
        """The answer depends on these scopes."""
        self.scopes.update(scopes)

    def stocks(self, entity_ids: Iterable[UUID]) -> None:
        """The answer shows these stocks (and their watcher counts, if it selects them)."""
        for entity_id in entity_ids:
            self.scopes.add(stock_scope(entity_id))
            if self.watcher_counts:
                self.scopes.add(watchers_scope(entity_id))


@dataclass(frozen=True)
class Reading:
    """Versions of some scopes and the snapshot they were read in (pg_snapshot as text)."""

    versions: dict[str, int]
    snapshot: str

    def of(self, scopes: Sequence[str]) -> tuple[int, ...]:
        """The version of each scope, in order (0 for a scope never bumped)."""
        return tuple(map(self.versions.get, scopes, repeat(0)))


class Fetcher(Protocol):
    """What the reader needs of a pool or connection."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def read(db: Fetcher, scopes: Sequence[str]) -> tuple[int, ...]:
    """The current version of each scope, in order (0 for a scope never bumped)."""
    return (await _read_all(db, scopes)).of(scopes)


async def _read_all(db: Fetcher, scopes: Sequence[str]) -> Reading:
    # Scope names are made by this module's functions from ids and numbers: never a space.
    (row,) = await db.fetch(_READ_SQL, SCOPE_SEPARATOR.join(scopes), SCOPE_SEPARATOR)
    return Reading(dict(zip(scopes, row["versions"], strict=True)), row["snapshot"])


async def settled_versions(
    db: Fetcher, scopes: Sequence[str], snapshot: str
) -> dict[str, int] | None:
    """Versions of `scopes` whose latest bumps all committed before `snapshot`, else None.

    An answer computed after the snapshot includes every write those versions count, so it
    may be stored under them; a bump by a transaction still running at the snapshot may count
    a write the answer missed.
    """
    rows = await db.fetch(_SETTLED_SQL, list(scopes), snapshot)
    if not all(row["settled"] for row in rows):
        return None
    return {row["scope"]: row["version"] for row in rows}


class _Batch:
    def __init__(self) -> None:
        self.scopes: set[str] = set()
        self.found: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()
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
        return (await self.reading(scopes)).of(scopes)

    async def reading(self, scopes: Sequence[str]) -> Reading:
        """The current versions of `scopes` (and maybe more) with the snapshot they came from."""
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch()
            asyncio.get_running_loop().call_soon(self._send, batch)
        batch.scopes.update(scopes)
        # Shielded: one cancelled request must not cancel the query its neighbours wait for.
        return await asyncio.shield(batch.found)

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
