"""Subscription replay: a user's alerts after a given alert, oldest first, by (sent_at, id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import asyncpg

from services.errors import BadUserInput, NotFound

REPLAY_PAGE_SIZE = 100

_POSITION_SQL = "SELECT sent_at, id FROM alert_history WHERE id = $1 AND user_id = $2"

# Alert columns plus its entity's (entity id as `entity_id`): what schema.types builds from.
_REPLAY_SQL = """
SELECT a.id, a.user_id, a.alert_type, a.as_of, a.previous_state, a.new_state, a.headline,
       a.what_changed, a.why_it_matters, a.before_vs_now, a.what_didnt_change,
       a.data_snapshot, a.sent_at, a.opened_at,
       e.id AS entity_id, e.ticker, e.name, e.sector, e.exchange, e.is_etf, e.data_status,
       e.has_price_data, e.has_fundamental_data, e.price_data_min_date, e.price_data_max_date,
       e.fundamental_data_min_date, e.fundamental_data_max_date, e.last_data_update
FROM alert_history a
JOIN entities e ON e.id = a.entity_id
WHERE a.user_id = $1 AND (a.sent_at, a.id) > ($2::timestamptz, $3::uuid)
ORDER BY a.sent_at, a.id
LIMIT $4
"""

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
