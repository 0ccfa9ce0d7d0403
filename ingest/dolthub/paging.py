"""Date-windowed, keyset-paged fetching of per-ticker DoltHub rows (RowLimit, deadlines)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Generic, TypeVar

from ingest.dolthub.client import DoltHubClient, DoltHubDeadlineError, DoltHubQueryError
from ingest.dolthub.sql import compare, select_sql, sql_date
from ingest.dolthub.values import InvalidValue, RejectCounts, SourceRow, parse_date

T = TypeVar("T")

MIN_WINDOW_DAYS = 7
DEFAULT_CONCURRENCY = 4


@dataclass
class FetchResult(Generic[T]):
    """Validated rows, rejects by reason, and how many rows the source sent in total."""

    rows: list[T] = field(default_factory=list)
    rejected: RejectCounts = field(default_factory=RejectCounts)
    source_rows: int = 0
    queries: int = 0

    @property
    def is_empty(self) -> bool:
        """True when the source sent no row at all (valid or not) for the range."""
        return self.source_rows == 0


@dataclass
class Pages:
    rows: list[SourceRow] = field(default_factory=list)
    queries: int = 0


def year_windows(start: date, end_exclusive: date) -> list[tuple[date, date]]:
    """Half-open [a, b) windows split at 1 January boundaries."""
    windows: list[tuple[date, date]] = []
    cursor = start
    while cursor < end_exclusive:
        boundary = min(date(cursor.year + 1, 1, 1), end_exclusive)
        windows.append((cursor, boundary))
        cursor = boundary
    return windows


def multi_year_windows(start: date, end_exclusive: date, years: int) -> list[tuple[date, date]]:
    """Half-open windows of `years` calendar years each (the first may be shorter)."""
    windows: list[tuple[date, date]] = []
    cursor = start
    while cursor < end_exclusive:
        boundary = min(date(cursor.year + years, 1, 1), end_exclusive)
        windows.append((cursor, boundary))
        cursor = boundary
    return windows


def _last_date(rows: Sequence[SourceRow], column: str) -> date | None:
    """The latest parseable date in a page (the keyset cursor)."""
    latest: date | None = None
    for row in rows:
        try:
            day = parse_date(row.get(column), column)
        except InvalidValue:
            continue
        latest = day if latest is None or day > latest else latest
    return latest


@dataclass(frozen=True)
class WindowQuery:
    """One per-ticker, date-bounded query shape; `where` holds the fixed filters."""

    db: str
    table: str
    columns: Sequence[str]
    date_column: str
    where: Sequence[str]

    def sql(self, start: date, end: date) -> str:
        bounds = [
            compare(self.date_column, ">=", sql_date(start)),
            compare(self.date_column, "<", sql_date(end)),
        ]
        return select_sql(
            self.table, self.columns, [*self.where, *bounds], order_by=self.date_column
        )


async def fetch_window(
    client: DoltHubClient,
    query: WindowQuery,
    start: date,
    end: date,
    min_window_days: int = MIN_WINDOW_DAYS,
) -> Pages:
    """All rows in [start, end): pages on RowLimit by date, halves the window on deadline."""
    pages = Pages()
    cursor = start
    while cursor < end:
        try:
            result = await client.query(query.db, query.sql(cursor, end))
        except DoltHubDeadlineError:
            if (end - cursor).days <= min_window_days:
                raise
            result = None
        if result is None:
            middle = cursor + timedelta(days=(end - cursor).days // 2)
            for a, b in ((cursor, middle), (middle, end)):
                half = await fetch_window(client, query, a, b, min_window_days)
                pages.rows += half.rows
                pages.queries += half.queries
            return pages
        pages.queries += 1
        pages.rows += result.rows
        if not result.truncated:
            break
        last = _last_date(result.rows, query.date_column)
        if last is None or last < cursor:
            raise DoltHubQueryError(
                f"{query.table}: a truncated page had no usable {query.date_column} to page from"
            )
        cursor = last + timedelta(days=1)
    return pages


async def fetch_windows(
    client: DoltHubClient,
    query: WindowQuery,
    windows: Sequence[tuple[date, date]],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Pages:
    """Fetch several windows concurrently (the client's pacer bounds the request rate)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(window: tuple[date, date]) -> Pages:
        async with gate:
            return await fetch_window(client, query, *window)

    tasks = [asyncio.ensure_future(one(w)) for w in windows]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:
        # Stop the sibling windows and surface the first DoltHubError itself (no group).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    total = Pages()
    for part in parts:
        total.rows += part.rows
        total.queries += part.queries
    return total


def dedupe_sorted(
    items: list[T], key: Callable[[T], date], counts: RejectCounts, reason: str = "duplicate_date"
) -> list[T]:
    """Sort by date and drop repeated dates (counted), keeping the first seen."""
    seen: set[date] = set()
    unique: list[T] = []
    for item in sorted(items, key=key):
        if key(item) in seen:
            counts[reason] += 1
            continue
        seen.add(key(item))
        unique.append(item)
    return unique
