"""Read side of entity_signals: the latest evaluation per entity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from services.entities import Executor

# One probe of the (entity_id, as_of) primary key per entity instead of scanning history.
_LATEST_SQL = """
SELECT s.entity_id, s.as_of, s.close, s.sma200, s.trend_position, s.valuation_metric,
       s.valuation_multiple, s.valuation_percentile, s.valuation_regime, s.eps_ttm,
       s.fundamental_direction, s.computed_at
FROM unnest($1::uuid[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT * FROM entity_signals x WHERE x.entity_id = k.id ORDER BY x.as_of DESC LIMIT 1
) s
"""

_LAST_AS_OF_SQL = "SELECT max(as_of) FROM entity_signals"


async def latest(db: Executor, entity_ids: Sequence[UUID]) -> dict[UUID, asyncpg.Record]:
    """The newest signal row of each entity that has been evaluated."""
    rows = await db.fetch(_LATEST_SQL, list(entity_ids))
    return {row["entity_id"]: row for row in rows}


async def last_evaluation_as_of(db: Executor) -> dt.date | None:
    """The most recent as-of date any entity was evaluated for."""
    value: dt.date | None = await db.fetchval(_LAST_AS_OF_SQL)
    return value
