"""Subscription replay: a user's alerts committed after a given alert, in commit order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg

from services.alerts import ALERT_SELECT
from services.errors import BadUserInput, NotFound

REPLAY_PAGE_SIZE = 100

_POSITION_SQL = "SELECT commit_seq FROM alert_history WHERE id = $1 AND user_id = $2"

# commit_seq is the commit order (migrations/0008): once an alert is visible, so is every
# alert committed before it, so "after" never skips one that committed late.
_REPLAY_SQL = (
    ALERT_SELECT
    + """WHERE a.user_id = $1 AND a.commit_seq > $2
ORDER BY a.commit_seq
LIMIT $3
"""
)


def parse_after(raw: str) -> UUID:
    """The `after` argument as an alert id; BAD_USER_INPUT when it is not one."""
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise BadUserInput("after must be the id of one of your alerts") from None


async def position_of(pool: asyncpg.Pool, user_id: UUID, alert_id: UUID) -> int:
    """The commit_seq of the user's alert; NOT_FOUND for unknown or another user's id."""
    row = await pool.fetchrow(_POSITION_SQL, alert_id, user_id)
    if row is None:
        raise NotFound("alert not found")
    seq: int = row["commit_seq"]
    return seq


async def replay(
    pool: asyncpg.Pool, user_id: UUID, after: int, page_size: int = REPLAY_PAGE_SIZE
) -> AsyncIterator[asyncpg.Record]:
    """The user's alerts committed after commit_seq `after`, oldest first, a page at a time."""
    position = after
    while True:
        rows = await pool.fetch(_REPLAY_SQL, user_id, position, page_size)
        for row in rows:
            yield row
        if len(rows) < page_size:
            return
        position = rows[-1]["commit_seq"]
