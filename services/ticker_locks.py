"""Per-ticker writer serialisation: a Postgres advisory lock around each read-merge-write."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.tickers import normalize_ticker

# Key space (docs/architecture.md): the first 8 bytes of SHA-256 over this prefix + TICKER as a
# signed big-endian bigint; the other advisory locks use small fixed keys or hashtextextended().
_KEY_PREFIX = b"material-changes/ticker-write/"


def ticker_lock_key(ticker: str) -> int:
    """The stable 64-bit advisory-lock key of `ticker`'s writers."""
    digest = hashlib.sha256(_KEY_PREFIX + normalize_ticker(ticker).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def ticker_write_lock(pool: asyncpg.Pool, ticker: str) -> AsyncIterator[None]:
    """Hold `ticker`'s write lock (waiting for it) on a pool connection for the block.

    Session-level rather than transaction-level: the block writes objects, not rows, so no
    transaction has to stay open; a process that dies loses its connection and the lock.
    """
    key = ticker_lock_key(ticker)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
