"""Alerts, read side: keyset-paginated list, get, mark opened, stats, recent count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from services.db import Executor
from services.entities import STOCK_COLUMNS, check_limit
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id
from services.pagination import KeysetPage, page_of, position

MAX_PAGE_SIZE = 100
MAX_RECENT_DAYS = 365

# Every alert query returns the alert plus its entity columns, so `Alert.stock` needs no
# second statement. These columns must stay in step with schema.alert.alert_from_row; the
# hub and replay build their statements from ALERT_SELECT too (constant fragments only).
ALERT_COLUMNS = """a.id, a.user_id, a.alert_type, a.as_of, a.previous_state, a.new_state,
       a.headline, a.what_changed, a.why_it_matters, a.before_vs_now, a.what_didnt_change,
       a.data_snapshot, a.sent_at"""

ALERT_SELECT = f"""
SELECT {ALERT_COLUMNS}, a.opened_at,
       {STOCK_COLUMNS}
FROM alert_history a
JOIN entities e ON e.id = a.entity_id
"""  # noqa: S608

# Newest first by (sent_at, id), served by alert_history_user_sent.
_PAGE_WHERE = "WHERE a.user_id = $1 AND (a.sent_at, a.id) < ($2::timestamptz, $3::uuid)"
_PAGE_ORDER = """
ORDER BY a.sent_at DESC, a.id DESC
LIMIT $4
"""
_PAGE_SQL = ALERT_SELECT + _PAGE_WHERE + _PAGE_ORDER
_PAGE_BY_TYPE_SQL = ALERT_SELECT + _PAGE_WHERE + " AND a.alert_type = $5" + _PAGE_ORDER

_BY_IDS_SQL = (
    ALERT_SELECT
    + """WHERE a.id = ANY($1::uuid[]) AND a.user_id = $2
ORDER BY a.sent_at, a.id
"""
)

# The outer SELECT reads the pre-update snapshot, so the fresh opened_at comes from `opened`.
_MARK_OPENED_SQL = f"""
WITH opened AS (
    UPDATE alert_history SET opened_at = now()
    WHERE id = $1 AND user_id = $2 AND opened_at IS NULL
    RETURNING id, opened_at
)
SELECT {ALERT_COLUMNS}, coalesce(o.opened_at, a.opened_at) AS opened_at,
       {STOCK_COLUMNS}
FROM alert_history a
JOIN entities e ON e.id = a.entity_id
LEFT JOIN opened o ON o.id = a.id
WHERE a.id = $1 AND a.user_id = $2
"""  # noqa: S608

_COUNT_SQL = """
SELECT count(*) FROM alert_history WHERE user_id = $1 AND ($2::text IS NULL OR alert_type = $2)
"""

_STATS_SQL = """
SELECT alert_type, count(*) AS total, count(opened_at) AS opened
FROM alert_history WHERE user_id = $1 GROUP BY alert_type
"""

_RECENT_SQL = """
SELECT count(*) FROM alert_history
WHERE user_id = $1 AND sent_at > now() - make_interval(days => $2)
"""


async def list_page(
    db: Executor, user_id: UUID, *, first: int, after: str | None, alert_type: str | None
) -> KeysetPage:
    """`first` alerts of the user after the cursor, newest first, optionally of one type."""
    check_limit(first, "first", MAX_PAGE_SIZE)
    sent_at, row_id = position(after)
    if alert_type is None:
        rows = await db.fetch(_PAGE_SQL, user_id, sent_at, row_id, first + 1)
    else:
        rows = await db.fetch(_PAGE_BY_TYPE_SQL, user_id, sent_at, row_id, first + 1, alert_type)
    return page_of(list(rows), first, "sent_at")


async def count(db: Executor, user_id: UUID, alert_type: str | None) -> int:
    """How many alerts the user has (of one type when given)."""
    total: int = await db.fetchval(_COUNT_SQL, user_id, alert_type)
    return total


async def get_by_ids(db: Executor, user_id: UUID, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """The user's alerts among `ids`, oldest first; other users' ids are silently absent."""
    return list(await db.fetch(_BY_IDS_SQL, list(ids), user_id))


async def mark_opened(db: Executor, user_id: UUID, raw_id: str) -> asyncpg.Record:
    """Set opened_at the first time only; NotFound for malformed, unknown or others' ids."""
    row = await db.fetchrow(_MARK_OPENED_SQL, parse_owned_id(raw_id, "alert"), user_id)
    if row is None:
        raise NotFound("alert not found")
    return row


@dataclass(frozen=True)
class AlertTotals:
    """Totals across the user's alert history."""

    total: int
    opened: int
    by_type: dict[str, int]

    @property
    def open_rate(self) -> float:
        return self.opened / self.total if self.total else 0.0


async def stats(db: Executor, user_id: UUID, alert_types: Sequence[str]) -> AlertTotals:
    """Total, opened and per-type counts; every type in `alert_types` appears, 0 if none."""
    rows = await db.fetch(_STATS_SQL, user_id)
    by_type = dict.fromkeys(alert_types, 0)
    by_type.update({row["alert_type"]: row["total"] for row in rows})
    return AlertTotals(
        total=sum(row["total"] for row in rows),
        opened=sum(row["opened"] for row in rows),
        by_type=by_type,
    )


async def recent_count(db: Executor, user_id: UUID, days: int) -> int:
    """Alerts sent to the user in the last `days` days (1–365)."""
    if not 1 <= days <= MAX_RECENT_DAYS:
        raise BadUserInput(f"days must be between 1 and {MAX_RECENT_DAYS}, got {days}")
    total: int = await db.fetchval(_RECENT_SQL, user_id, days)
    return total
