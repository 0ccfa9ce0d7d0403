"""Entities (stocks): lookup, race-free get-or-create, search, popularity, watcher counts."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from uuid import UUID

import asyncpg

from services.db import Connection, Executor
from services.errors import BadUserInput, ServiceError
from services.pagination import check_page_size

# What services accept: a plain connection, a pooled one (inside transactions) or the pool.

# Every query that builds a Stock selects these entity columns (entity id as `entity_id`);
# they must stay in step with schema.stock.stock_from_row. Statements that embed them are
# f-strings of module constants only (hence `noqa: S608`); values always go in as $n.
STOCK_COLUMNS = """e.id AS entity_id, e.ticker, e.name, e.sector, e.exchange, e.is_etf,
       e.data_status, e.has_price_data, e.has_fundamental_data, e.price_data_min_date,
       e.price_data_max_date, e.fundamental_data_min_date, e.fundamental_data_max_date,
       e.last_data_update"""

MAX_SEARCH_QUERY_LENGTH = 100


class DataStatus(StrEnum):
    """Whether an entity's market data is in object storage; the value entities stores."""

    NONE = "none"
    QUEUED = "queued"
    READY = "ready"
    UNAVAILABLE = "unavailable"


MAX_LIST_LIMIT = 50

_BY_TICKER_SQL = f"""
SELECT {STOCK_COLUMNS}
FROM entities e WHERE e.ticker = $1
"""  # noqa: S608

_BY_IDS_SQL = f"""
SELECT {STOCK_COLUMNS}
FROM entities e WHERE e.id = ANY($1::uuid[])
"""  # noqa: S608

# Existing rows are only read, never upserted: a no-op DO UPDATE would lock (and rewrite) a
# popular stock's row for every addStock, a row backfills and evaluations update too. A row a
# concurrent transaction inserts after this statement's snapshot is in neither part (DO
# NOTHING skips it, the SELECT cannot see it): get_or_create asks again for those.
_GET_OR_CREATE_SQL = f"""
WITH created AS (
    INSERT INTO entities AS e (ticker)
    SELECT t FROM unnest($1::text[]) AS t
    WHERE NOT EXISTS (SELECT 1 FROM entities x WHERE x.ticker = t)
    ORDER BY t
    ON CONFLICT (ticker) DO NOTHING
    RETURNING {STOCK_COLUMNS}
)
SELECT * FROM created
UNION ALL
SELECT {STOCK_COLUMNS} FROM entities e WHERE e.ticker = ANY($1::text[])
"""  # noqa: S608
# Each retry runs after the concurrent inserter committed, so one is normally enough.
_GET_OR_CREATE_ATTEMPTS = 5

_UNIVERSE_SQL = """
SELECT EXISTS (SELECT 1 FROM entities WHERE in_symbol_universe) AS loaded,
       ARRAY(SELECT ticker FROM entities WHERE in_symbol_universe AND ticker = ANY($1::text[]))
           AS known
"""

# Watcher counts are maintained by triggers on watchlists (migrations/0009_cache_scopes.sql):
# one row per entity, so reading them costs the same at 3 watchers or 300,000.
_WATCHER_COUNTS_SQL = """
SELECT c.entity_id AS id, c.watchers FROM entity_watch_counts c
WHERE c.entity_id = ANY($1::uuid[])
"""

# The partial index entity_watch_counts_popular yields the counts in order; ties by ticker.
_POPULAR_SQL = f"""
SELECT {STOCK_COLUMNS},
       c.watchers AS watcher_count
FROM entity_watch_counts c
JOIN entities e ON e.id = c.entity_id
WHERE c.watchers > 0
ORDER BY c.watchers DESC, e.ticker
LIMIT $1
"""  # noqa: S608

# $1 query upper-cased, $2 LIKE prefix pattern, $3 query as typed, $4 limit, $5 substring
# pattern. The name-substring branch only runs for queries of 3+ characters (the shortest a
# trigram index can serve), so it is a separate statement rather than a runtime flag that
# would defeat a generic plan.
_SEARCH_SELECT = f"""
SELECT {STOCK_COLUMNS},
       coalesce((SELECT c.watchers FROM entity_watch_counts c WHERE c.entity_id = e.id), 0)
           AS watcher_count,
       e.ticker = $1 AS exact_match,
       e.ticker LIKE $2 AS prefix_match,
       similarity(coalesce(e.name, ''), $3) AS name_score
FROM entities e
"""  # noqa: S608
_SEARCH_ORDER = """
ORDER BY exact_match DESC, prefix_match DESC, name_score DESC, watcher_count DESC, e.ticker
LIMIT $4
"""
SEARCH_SHORT_SQL = (
    _SEARCH_SELECT + "WHERE e.ticker = $1 OR e.ticker LIKE $2 OR e.name % $3" + _SEARCH_ORDER
)
SEARCH_SQL = (
    _SEARCH_SELECT
    + "WHERE e.ticker = $1 OR e.ticker LIKE $2 OR e.name % $3 OR e.name ILIKE $5"
    + _SEARCH_ORDER
)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def get_by_ticker(db: Executor, ticker: str) -> asyncpg.Record | None:
    """The entity with this (normalized) ticker, or None."""
    return await db.fetchrow(_BY_TICKER_SQL, ticker)


async def get_by_ids(db: Executor, ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """Entities for these ids, in no particular order."""
    return list(await db.fetch(_BY_IDS_SQL, list(ids)))


async def get_or_create(conn: Connection, tickers: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Entity rows by ticker, creating missing ones; safe against concurrent creators."""
    wanted = sorted(set(tickers))
    found: dict[str, asyncpg.Record] = {}
    for _ in range(_GET_OR_CREATE_ATTEMPTS):
        missing = [ticker for ticker in wanted if ticker not in found]
        if not missing:
            break
        found.update((row["ticker"], row) for row in await conn.fetch(_GET_OR_CREATE_SQL, missing))
    else:
        if len(found) < len(wanted):
            raise ServiceError(f"entities neither created nor found: {set(wanted) - set(found)}")
    return found


async def check_in_universe(db: Executor, tickers: Sequence[str]) -> None:
    """BadUserInput naming unknown tickers, but only once the symbol universe is loaded."""
    row = await db.fetchrow(_UNIVERSE_SQL, list(tickers))
    assert row is not None
    if not row["loaded"]:
        return
    unknown = sorted(set(tickers) - set(row["known"]))
    if unknown:
        raise BadUserInput(f"unknown ticker: {', '.join(unknown)}")


async def watcher_counts(db: Executor, ids: Sequence[UUID]) -> dict[UUID, int]:
    """Number of watchlists holding each entity (0 when none)."""
    rows = await db.fetch(_WATCHER_COUNTS_SQL, list(ids))
    return {row["id"]: row["watchers"] for row in rows}


async def popular(db: Executor, limit: int) -> list[asyncpg.Record]:
    """Watched entities by watcher count desc, then ticker; rows carry `watcher_count`."""
    check_page_size(limit, "limit", MAX_LIST_LIMIT)
    return list(await db.fetch(_POPULAR_SQL, limit))


async def search(db: Executor, query: str, limit: int) -> list[asyncpg.Record]:
    """Exact ticker, then ticker prefix, then trigram name match, then popularity.

    An empty (whitespace-only) query returns no rows rather than an error, so
    search-as-you-type clients need no special case.
    """
    check_page_size(limit, "limit", MAX_LIST_LIMIT)
    text = query.strip()
    if len(text) > MAX_SEARCH_QUERY_LENGTH:
        raise BadUserInput(f"query must be at most {MAX_SEARCH_QUERY_LENGTH} characters")
    if not text:
        return []
    upper = text.upper()
    prefix = _like_escape(upper) + "%"
    if len(text) < 3:
        return list(await db.fetch(SEARCH_SHORT_SQL, upper, prefix, text, limit))
    substring = "%" + _like_escape(text) + "%"
    return list(await db.fetch(SEARCH_SQL, upper, prefix, text, limit, substring))
