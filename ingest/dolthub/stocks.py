"""Typed fetchers over DoltHub's stocks and earnings databases (prices, splits, symbols)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

from ingest.dolthub.client import DoltHubClient, DoltHubError, DoltHubQueryError
from ingest.dolthub.paging import (
    FetchResult,
    WindowQuery,
    dedupe_sorted,
    fetch_window,
    fetch_windows,
    year_windows,
)
from ingest.dolthub.sql import compare, equals, select_sql, sql_string
from ingest.dolthub.values import (
    InvalidValue,
    RejectCounts,
    SourceRow,
    parse_bool,
    parse_date,
    parse_decimal,
    price_values,
    require,
    validate_rows,
)
from services.errors import BadUserInput
from services.market.records import Dividend, PriceBar, Split
from services.symbols import SymbolInfo
from services.tickers import normalize_ticker

OHLCV_COLUMNS = ("date", "open", "high", "low", "close", "volume")
SPLIT_COLUMNS = ("ex_date", "to_factor", "for_factor")
DIVIDEND_COLUMNS = ("ex_date", "amount")
SYMBOL_COLUMNS = (
    "act_symbol",
    "security_name",
    "listing_exchange",
    "market_category",
    "is_etf",
    "is_test_issue",
    "financial_status",
    "last_seen",
)
# Nasdaq Trader's single-letter listing-exchange codes, as found in DoltHub's `symbol`.
EXCHANGE_CODES = {
    "A": "NYSE American",
    "N": "NYSE",
    "P": "NYSE Arca",
    "Q": "NASDAQ",
    "V": "IEX",
    "Z": "Cboe BZX",
}


class TickerNotInSource(DoltHubError):
    """The source has no rows at all for this ticker in the requested range: permanent."""

    transient = False


def parse_price_row(row: SourceRow) -> PriceBar:
    v = price_values(row)
    return PriceBar(v.date, float(v.open), float(v.high), float(v.low), float(v.close), v.volume)


async def fetch_price_bars(
    client: DoltHubClient,
    db: str,
    ticker: str,
    start: date,
    end: date,
    *,
    require_rows: bool = False,
) -> FetchResult[PriceBar]:
    """Daily bars with start ≤ date ≤ end, one query per calendar year, validated and sorted.

    With `require_rows`, a range in which the source has no row at all raises
    TickerNotInSource (permanent); otherwise an empty result means "nothing in this window".
    """
    symbol = normalize_ticker(ticker)
    if end < start:
        return FetchResult()
    query = WindowQuery(
        db, "ohlcv", OHLCV_COLUMNS, "date", [equals("act_symbol", sql_string(symbol))]
    )
    pages = await fetch_windows(client, query, year_windows(start, end + timedelta(days=1)))
    bars, rejected = validate_rows(pages.rows, parse_price_row)
    bars = [b for b in bars if start <= b.date <= end]
    result = FetchResult(
        rows=dedupe_sorted(bars, lambda b: b.date, rejected),
        rejected=rejected,
        source_rows=len(pages.rows),
        queries=pages.queries,
    )
    if require_rows and result.is_empty:
        raise TickerNotInSource(f"DoltHub has no price rows for {symbol} from {start} to {end}")
    return result


def parse_split_row(row: SourceRow) -> Split:
    ex_date = parse_date(require(row, "ex_date"), "ex_date")
    to_factor = parse_decimal(require(row, "to_factor"), "to_factor")
    for_factor = parse_decimal(require(row, "for_factor"), "for_factor")
    if to_factor <= 0 or for_factor <= 0:
        raise InvalidValue("non_positive_factor", f"{to_factor}/{for_factor}")
    return Split(ex_date, float(to_factor), float(for_factor))


async def fetch_splits(
    client: DoltHubClient,
    stocks_db: str,
    ticker: str,
    start: date = date(1990, 1, 1),
    end: date | None = None,
) -> FetchResult[Split]:
    """Every split of the ticker (the `split` table is small; still date-bounded and paged)."""
    symbol = normalize_ticker(ticker)
    stop = (end or date.today()) + timedelta(days=1)
    query = WindowQuery(
        stocks_db, "split", SPLIT_COLUMNS, "ex_date", [equals("act_symbol", sql_string(symbol))]
    )
    pages = await fetch_window(client, query, start, stop)
    splits, rejected = validate_rows(pages.rows, parse_split_row)
    return FetchResult(
        rows=dedupe_sorted(splits, lambda s: s.ex_date, rejected),
        rejected=rejected,
        source_rows=len(pages.rows),
        queries=pages.queries,
    )


def parse_dividend_row(row: SourceRow) -> Dividend:
    ex_date = parse_date(require(row, "ex_date"), "ex_date")
    amount = parse_decimal(require(row, "amount"), "amount")
    if amount <= 0:
        raise InvalidValue("non_positive_amount", str(amount))
    return Dividend(ex_date, float(amount))


async def fetch_dividends(
    client: DoltHubClient,
    stocks_db: str,
    ticker: str,
    start: date,
    end: date,
) -> FetchResult[Dividend]:
    """The ticker's dividends with start <= ex_date <= end (a small table; still paged)."""
    symbol = normalize_ticker(ticker)
    query = WindowQuery(
        stocks_db,
        "dividend",
        DIVIDEND_COLUMNS,
        "ex_date",
        [equals("act_symbol", sql_string(symbol))],
    )
    pages = await fetch_window(client, query, start, end + timedelta(days=1))
    dividends, rejected = validate_rows(pages.rows, parse_dividend_row)
    return FetchResult(
        rows=dedupe_sorted(dividends, lambda d: d.ex_date, rejected),
        rejected=rejected,
        source_rows=len(pages.rows),
        queries=pages.queries,
    )


def _optional_text(row: SourceRow, column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    return value.strip() or None


def _symbol_info(row: SourceRow) -> SymbolInfo:
    ticker = normalize_ticker(require(row, "act_symbol"))
    exchange = _optional_text(row, "listing_exchange")
    last_seen_raw = row.get("last_seen")
    return SymbolInfo(
        ticker=ticker,
        name=_optional_text(row, "security_name"),
        exchange=EXCHANGE_CODES.get(exchange, exchange) if exchange else None,
        is_etf=parse_bool(row.get("is_etf"), "is_etf"),
        is_test_issue=parse_bool(row.get("is_test_issue"), "is_test_issue"),
        market_category=_optional_text(row, "market_category"),
        financial_status=_optional_text(row, "financial_status"),
        last_seen=parse_date(last_seen_raw, "last_seen") if last_seen_raw else None,
    )


def parse_symbol_row(row: SourceRow, counts: RejectCounts) -> SymbolInfo | None:
    try:
        return _symbol_info(row)
    except InvalidValue as exc:
        counts[exc.reason] += 1
    except BadUserInput:
        counts["bad_ticker"] += 1
    return None


async def iter_symbols(
    client: DoltHubClient,
    stocks_db: str,
    page_size: int = 500,
    skipped: RejectCounts | None = None,
) -> AsyncIterator[SymbolInfo]:
    """Every non-test symbol in act_symbol order, keyset-paged; bad rows counted in `skipped`."""
    counts = RejectCounts() if skipped is None else skipped
    after: str | None = None
    while True:
        where = [] if after is None else [compare("act_symbol", ">", sql_string(after))]
        sql = select_sql("symbol", SYMBOL_COLUMNS, where, order_by="act_symbol", limit=page_size)
        result = await client.query(stocks_db, sql)
        for row in result.rows:
            info = parse_symbol_row(row, counts)
            if info is None:
                continue
            if info.is_test_issue:
                counts["test_issue"] += 1
                continue
            yield info
        keys = [row.get("act_symbol") for row in result.rows]
        last = max((k for k in keys if k is not None), default=None)
        if last is None or (len(result.rows) < page_size and not result.truncated):
            return
        if after is not None and last <= after:
            raise DoltHubQueryError("symbol paging made no progress")
        after = last


async def fetch_symbol(client: DoltHubClient, stocks_db: str, ticker: str) -> SymbolInfo | None:
    """The ticker's `symbol` row (test issues included, flagged), or None when absent."""
    symbol = normalize_ticker(ticker)
    where = [equals("act_symbol", sql_string(symbol))]
    result = await client.query(stocks_db, select_sql("symbol", SYMBOL_COLUMNS, where, limit=1))
    counts = RejectCounts()
    for row in result.rows:
        info = parse_symbol_row(row, counts)
        if info is not None:
            return info
    return None
