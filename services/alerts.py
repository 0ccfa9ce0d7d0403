"""Alerts, read side: keyset-paginated list, get, mark opened, stats, recent count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from services.db import Executor
from services.entities import STOCK_COLUMNS
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id
from services.pagination import KeysetPage, check_page_size, page_of, seq_position

MAX_PAGE_SIZE = 100
MAX_RECENT_DAYS = 365

# Every alert query returns the alert plus its entity columns, so `Alert.stock` needs no
# second statement. These columns must stay in step with schema.alert.alert_from_row; the
# hub and replay build their statements from ALERT_SELECT too (constant fragments only) and
# order by commit_seq, the commit order (migrations/0008_alert_fanout.sql).
ALERT_COLUMNS = """a.id, a.user_id, a.alert_type, a.as_of, a.previous_state, a.new_state,
       a.headline, a.what_changed, a.why_it_matters, a.before_vs_now, a.what_didnt_change,
       a.data_snapshot, a.sent_at, a.commit_seq"""

ALERT_SELECT = f"""
SELECT {ALERT_COLUMNS}, a.opened_at,
       {STOCK_COLUMNS}
FROM alert_history a
JOIN entities e ON e.id = a.entity_id
"""  # noqa: S608


# Lists are newest first in commit order, the order `alertCreated(after:)` replays in, so
# the newest listed id is the right `after`. Each filter combination is its own statement
# with only the conditions it needs: a prepared `$n IS NULL OR …` would let the plan cache
# settle on one generic plan that scans a user's whole history for page one.
def filter_conditions(
    where: AlertFilter, entity_id: UUID | None, first_parameter: int
) -> tuple[str, list[object]]:
    """The AND-ed conditions of the filters that are set, numbered from `first_parameter`.

    `entity_id` is `where.ticker` already resolved (`entity_of`): a plain parameter lets
    even a generic plan pick the (user_id, entity_id, commit_seq) index. Only constant
    fragments and parameter numbers are put together here, never values.
    """
    sql, values = "", list[object]()
    for column, value in (("a.alert_type", where.alert_type), ("a.entity_id", entity_id)):
        if value is None:
            continue
        sql += f"\n  AND {column} = ${first_parameter + len(values)}"
        values.append(value)
    if where.unread is not None:
        # A literal test, so the unread partial index (alert_history_user_unread_seq) applies.
        sql += "\n  AND a.opened_at IS NULL" if where.unread else "\n  AND a.opened_at IS NOT NULL"
    return sql, values


async def entity_of(db: Executor, where: AlertFilter) -> UUID | None:
    """The stock `where.ticker` names (None: no ticker filter, or no such stock)."""
    if where.ticker is None:
        return None
    found: UUID | None = await db.fetchval(
        "SELECT id FROM entities WHERE ticker = $1", where.ticker
    )
    return found


PAGE_HEAD = ALERT_SELECT + "WHERE a.user_id = $1 AND a.commit_seq < $2"
PAGE_ORDER = """
ORDER BY a.commit_seq DESC
LIMIT $3
"""
# The newest `$3` alerts of the user for each entity in `$2`, newest first: one index probe
# per entity (the (user_id, entity_id, …) unique key) instead of ranking all of them.
_BY_ENTITIES_SQL = f"""
SELECT x.* FROM (SELECT DISTINCT unnest($2::uuid[]) AS id) wanted
CROSS JOIN LATERAL ({ALERT_SELECT}
    WHERE a.user_id = $1 AND a.entity_id = wanted.id
    ORDER BY a.commit_seq DESC
    LIMIT $3
) x
ORDER BY x.entity_id, x.commit_seq DESC
"""  # noqa: S608
_MARK_ALL_OPENED_SQL = (
    "UPDATE alert_history SET opened_at = now() WHERE user_id = $1 AND opened_at IS NULL"
)
_MARK_ALL_OPENED_BEFORE_SQL = _MARK_ALL_OPENED_SQL + " AND sent_at <= $2"

_BY_IDS_SQL = (
    ALERT_SELECT
    + """WHERE a.id = ANY($1::uuid[]) AND a.user_id = $2
ORDER BY a.commit_seq
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

_COUNT_HEAD = "SELECT count(*) FROM alert_history a WHERE a.user_id = $1"

_STATS_SQL = """
SELECT alert_type, count(*) AS total, count(opened_at) AS opened
FROM alert_history WHERE user_id = $1 GROUP BY alert_type
"""

_RECENT_SQL = """
SELECT count(*) FROM alert_history
WHERE user_id = $1 AND sent_at > now() - make_interval(days => $2)
"""


@dataclass(frozen=True)
class AlertFilter:
    """Which of a user's alerts a page or count covers (None: no restriction)."""

    alert_type: str | None = None
    ticker: str | None = None
    unread: bool | None = None


async def list_page(
    db: Executor, user_id: UUID, *, first: int, after: str | None, where: AlertFilter
) -> KeysetPage:
    """`first` alerts of the user after the cursor, newest first, filtered by `where`."""
    check_page_size(first, "first", MAX_PAGE_SIZE)
    entity_id = await entity_of(db, where)
    if where.ticker is not None and entity_id is None:
        return page_of([], first, "commit_seq")
    conditions, values = filter_conditions(where, entity_id, 4)
    rows = await db.fetch(
        PAGE_HEAD + conditions + PAGE_ORDER, user_id, seq_position(after), first + 1, *values
    )
    return page_of(list(rows), first, "commit_seq")


async def count(db: Executor, user_id: UUID, where: AlertFilter) -> int:
    """How many alerts of the user match `where`."""
    entity_id = await entity_of(db, where)
    if where.ticker is not None and entity_id is None:
        return 0
    conditions, values = filter_conditions(where, entity_id, 2)
    total: int = await db.fetchval(_COUNT_HEAD + conditions, user_id, *values)
    return total


async def for_entities(
    db: Executor, user_id: UUID, entity_ids: Sequence[UUID], first: int
) -> dict[UUID, list[asyncpg.Record]]:
    """The user's newest `first` alerts of each entity, newest first (one statement)."""
    check_page_size(first, "first", MAX_PAGE_SIZE)
    found: dict[UUID, list[asyncpg.Record]] = {}
    for row in await db.fetch(_BY_ENTITIES_SQL, user_id, list(entity_ids), first):
        found.setdefault(row["entity_id"], []).append(row)
    return found


async def mark_all_opened(db: Executor, user_id: UUID, before: datetime | None) -> int:
    """Mark the user's unopened alerts (sent at or before `before`) opened; how many."""
    if before is not None and before.tzinfo is not None:
        try:
            before = before.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00+14:00 or 9999-12-31T23:59-14:00: no UTC instant to compare.
            raise BadUserInput("before is outside the years 1-9999 in UTC") from None
    if before is None:
        result = await db.execute(_MARK_ALL_OPENED_SQL, user_id)
    else:
        result = await db.execute(_MARK_ALL_OPENED_BEFORE_SQL, user_id, before)
    return int(result.rsplit(" ", 1)[-1])


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
