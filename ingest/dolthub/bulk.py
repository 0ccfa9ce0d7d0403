"""Every symbol's rows for a range of dates at once: keyset pages over (date, act_symbol)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from ingest.dolthub.client import DoltHubClient, DoltHubDeadlineError, DoltHubQueryError
from ingest.dolthub.paging import FetchResult, Pages, dedupe_sorted
from ingest.dolthub.sql import compare, equals, select_sql, sql_date, sql_string
from ingest.dolthub.stocks import (
    DIVIDEND_COLUMNS,
    OHLCV_COLUMNS,
    SPLIT_COLUMNS,
    parse_dividend_row,
    parse_price_row,
    parse_split_row,
)
from ingest.dolthub.values import InvalidValue, SourceRow, parse_date, validate_rows
from services.market.records import Dividend, PriceBar, Split

T = TypeVar("T")

SYMBOL = "act_symbol"
# Below DoltHub's ~1,000-row cap, so a full page (not only RowLimit) means "page further".
PAGE_ROWS = 900
MIN_PAGE_ROWS = 50


@dataclass(frozen=True)
class DateKeysetQuery:
    """A table whose key starts with (date column, act_symbol); `where` holds fixed filters."""

    db: str
    table: str
    columns: Sequence[str]
    date_column: str
    where: Sequence[str] = ()

    def after_date(self, after: date, through: date, limit: int) -> str:
        """The first page of the dates in (after, through]."""
        bounds = [
            compare(self.date_column, ">", sql_date(after)),
            compare(self.date_column, "<=", sql_date(through)),
        ]
        return select_sql(
            self.table,
            self.columns,
            [*self.where, *bounds],
            order_by=(self.date_column, SYMBOL),
            limit=limit,
        )

    def within_date(self, day: date, after_symbol: str, limit: int) -> str:
        """The next page of one date, after a symbol.

        Two AND-only shapes rather than a row-value `(date, act_symbol) > (…)` comparison: each
        is a plain range of the primary key, which any engine serves from the index.
        """
        where = [
            equals(self.date_column, sql_date(day)),
            compare(SYMBOL, ">", sql_string(after_symbol)),
        ]
        return select_sql(
            self.table, self.columns, [*self.where, *where], order_by=SYMBOL, limit=limit
        )


def _row_key(row: SourceRow, date_column: str) -> tuple[str | None, str | None]:
    return row.get(date_column), row.get(SYMBOL)


def _last_key(rows: Sequence[SourceRow], date_column: str) -> tuple[date, str] | None:
    """The (date, symbol) of the page's last row with a usable one: the cursor to page from.

    Taken in the server's order, not recomputed here, so the next page's `act_symbol > …` uses
    the same collation that ordered this one and no symbol falls between pages.
    """
    for row in reversed(rows):
        symbol = row.get(SYMBOL)
        if symbol is None:
            continue
        try:
            return parse_date(row.get(date_column), date_column), symbol
        except InvalidValue:
            continue
    return None


async def fetch_dates(
    client: DoltHubClient,
    query: DateKeysetQuery,
    after: date,
    through: date,
    page_rows: int = PAGE_ROWS,
) -> Pages:
    """Every symbol's rows with after < date <= through, in keyset pages of `page_rows`.

    A page that is full or marked RowLimit continues after its last (date, symbol); a RowLimit
    page is never taken as complete. A deadline halves the page size (down to
    MIN_PAGE_ROWS) and asks again. Rows seen on an earlier page (one whose date could not be
    parsed sorts past the cursor and comes again) are kept once.
    """
    pages = Pages()
    seen: set[tuple[str | None, str | None]] = set()
    lower = after
    inside: tuple[date, str] | None = None  # paging within one date, after this symbol
    limit = page_rows
    while lower < through or inside is not None:
        sql = (
            query.after_date(lower, through, limit)
            if inside is None
            else query.within_date(*inside, limit)
        )
        try:
            result = await client.query(query.db, sql)
        except DoltHubDeadlineError:
            if limit <= MIN_PAGE_ROWS:
                raise
            limit = max(MIN_PAGE_ROWS, limit // 2)
            continue
        pages.queries += 1
        for row in result.rows:
            key = _row_key(row, query.date_column)
            if key not in seen:
                seen.add(key)
                pages.rows.append(row)
        more = result.truncated or len(result.rows) >= limit
        if not more:
            if inside is None:
                break  # every date up to `through` is in
            lower, inside = inside[0], None
            continue
        if inside is None:
            last = _last_key(result.rows, query.date_column)
        else:  # the date is the query's: a row's unparseable date does not stop the paging
            symbols = [s for row in result.rows if (s := row.get(SYMBOL)) is not None]
            last = (inside[0], symbols[-1]) if symbols else None
        if last is None or last == inside or last[0] <= lower:
            raise DoltHubQueryError(f"{query.table}: a full page gave no key to page on from")
        inside = last
    return pages


def by_symbol(rows: Sequence[SourceRow], wanted: Mapping[str, date]) -> dict[str, list[SourceRow]]:
    """The rows of the `wanted` symbols, grouped; other symbols' rows are dropped unread."""
    grouped: dict[str, list[SourceRow]] = {symbol: [] for symbol in wanted}
    for row in rows:
        symbol = row.get(SYMBOL)
        if symbol is not None and symbol in grouped:
            grouped[symbol].append(row)
    return grouped


def _per_symbol(
    rows: Sequence[SourceRow],
    starts: Mapping[str, date],
    through: date,
    parse: Callable[[SourceRow], T],
    day_of: Callable[[T], date],
    date_column: str,
) -> dict[str, FetchResult[T]]:
    """Validate each wanted symbol's rows, keep start <= day <= through, sorted and unique."""
    results: dict[str, FetchResult[T]] = {}
    for symbol, own in by_symbol(rows, starts).items():
        start = starts[symbol]
        # Rows before the symbol's own start are already stored (it was ahead of the window).
        fresh = [row for row in own if not _before(row, date_column, start)]
        items, rejected = validate_rows(fresh, parse)
        items = [item for item in items if start <= day_of(item) <= through]
        results[symbol] = FetchResult(
            rows=dedupe_sorted(items, day_of, rejected),
            rejected=rejected,
            source_rows=len(fresh),
        )
    return results


def _before(row: SourceRow, date_column: str, start: date) -> bool:
    try:
        return parse_date(row.get(date_column), date_column) < start
    except InvalidValue:
        return False


async def _fetch_by_date(
    client: DoltHubClient,
    query: DateKeysetQuery,
    starts: Mapping[str, date],
    after: date,
    through: date,
    page_rows: int,
    parse: Callable[[SourceRow], T],
    day_of: Callable[[T], date],
) -> tuple[dict[str, FetchResult[T]], int]:
    """One table's rows dated in (after, through], per wanted symbol; and the requests made."""
    pages = await fetch_dates(client, query, after, through, page_rows)
    found = _per_symbol(pages.rows, starts, through, parse, day_of, query.date_column)
    return found, pages.queries


async def fetch_bars_by_date(
    client: DoltHubClient,
    stocks_db: str,
    starts: Mapping[str, date],
    after: date,
    through: date,
    page_rows: int = PAGE_ROWS,
) -> tuple[dict[str, FetchResult[PriceBar]], int]:
    """Bars of every symbol in (after, through], validated per wanted symbol from its start.

    Returns each wanted symbol's bars (empty when DoltHub has none for it in the window) and the
    number of requests made.
    """
    query = DateKeysetQuery(stocks_db, "ohlcv", (*OHLCV_COLUMNS, SYMBOL), "date")
    return await _fetch_by_date(
        client, query, starts, after, through, page_rows, parse_price_row, lambda b: b.date
    )


async def fetch_splits_by_date(
    client: DoltHubClient,
    stocks_db: str,
    starts: Mapping[str, date],
    after: date,
    through: date,
    page_rows: int = PAGE_ROWS,
) -> tuple[dict[str, FetchResult[Split]], int]:
    """Splits of every symbol with ex_date in (after, through], per wanted symbol from its start."""
    query = DateKeysetQuery(stocks_db, "split", (*SPLIT_COLUMNS, SYMBOL), "ex_date")
    return await _fetch_by_date(
        client, query, starts, after, through, page_rows, parse_split_row, lambda s: s.ex_date
    )


async def fetch_dividends_by_date(
    client: DoltHubClient,
    stocks_db: str,
    starts: Mapping[str, date],
    after: date,
    through: date,
    page_rows: int = PAGE_ROWS,
) -> tuple[dict[str, FetchResult[Dividend]], int]:
    """Dividends of every symbol with ex_date in (after, through], per wanted symbol."""
    query = DateKeysetQuery(stocks_db, "dividend", (*DIVIDEND_COLUMNS, SYMBOL), "ex_date")
    return await _fetch_by_date(
        client, query, starts, after, through, page_rows, parse_dividend_row, lambda d: d.ex_date
    )


async def symbols_with_quarters(
    client: DoltHubClient,
    earnings_db: str,
    starts: Mapping[str, date],
    after: date,
    through: date,
    page_rows: int = PAGE_ROWS,
) -> tuple[set[str], int]:
    """The wanted symbols with a quarterly income statement dated from their start to `through`.

    The bulk form of the per-ticker probe (which row is there, not its values): a row whose
    date does not parse counts as there, so the full fetch that follows judges it.
    """
    query = DateKeysetQuery(
        earnings_db,
        "income_statement",
        ("date", SYMBOL),
        "date",
        [equals("period", sql_string("Quarter"))],
    )
    pages = await fetch_dates(client, query, after, through, page_rows)
    found: set[str] = set()
    for symbol, rows in by_symbol(pages.rows, starts).items():
        if any(not _before(row, "date", starts[symbol]) for row in rows):
            found.add(symbol)
    return found, pages.queries
