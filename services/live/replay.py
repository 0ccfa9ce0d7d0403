"""Subscription replay: a user's alerts after a given alert, oldest first, by (sent_at, id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import asyncpg

from services.alerts import ALERT_SELECT
from services.errors import BadUserInput, NotFound

REPLAY_PAGE_SIZE = 100

_POSITION_SQL = "SELECT sent_at, id FROM alert_history WHERE id = $1 AND user_id = $2"

_REPLAY_SQL = (
    ALERT_SELECT
    + """WHERE a.user_id = $1 AND (a.sent_at, a.id) > ($2::timestamptz, $3::uuid)
ORDER BY a.sent_at, a.id
LIMIT $4
"""
)

Key = tuple[datetime, UUID]


def parse_after(raw: str) -> UUID:
    """The `after` argument as an alert id; BAD_USER_INPUT when it is not one."""
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise BadUserInput("after must be the id of one of your alerts") from None


async def position_of(pool: asyncpg.Pool, user_id: UUID, alert_id: UUID) -> Key:
    """The (sent_at, id) of the user's alert; NOT_FOUND for unknown or another user's id."""
    row = await pool.fetchrow(_POSITION_SQL, alert_id, user_id)
    if row is None:
        raise NotFound("alert not found")
    return (row["sent_at"], row["id"])


async def replay(
    pool: asyncpg.Pool, user_id: UUID, after: Key, page_size: int = REPLAY_PAGE_SIZE
) -> AsyncIterator[asyncpg.Record]:
    """The user's alerts strictly after `after`, oldest first, fetched a page at a time."""
    position = after
    while True:
        rows = await pool.fetch(_REPLAY_SQL, user_id, position[0], position[1], page_size)
        for row in rows:
            yield row
        if len(rows) < page_size:
            return
        position = (rows[-1]["sent_at"], rows[-1]["id"])
