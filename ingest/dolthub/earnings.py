"""Quarterly fundamentals from DoltHub's earnings database, joined in Python (docs/signals.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.paging import FetchResult, WindowQuery, fetch_windows, multi_year_windows
from ingest.dolthub.sql import equals, sql_string
from ingest.dolthub.values import (
    InvalidValue,
    RejectCounts,
    SourceRow,
    parse_date,
    parse_optional_decimal,
    require,
)
from services.market.records import QuarterFundamentals
from services.tickers import normalize_ticker

WINDOW_YEARS = 4
DEFAULT_START = date(2011, 1, 1)


@dataclass(frozen=True)
class EarningsTable:
    """One earnings table: its date column and the numeric columns we read."""

    name: str
    date_column: str
    values: tuple[str, ...]
    quarterly_only: bool = True


INCOME = EarningsTable(
    "income_statement",
    "date",
    (
        "sales",
        "income_after_depreciation_and_amortization",
        "net_income",
        "income_before_depreciation_and_amortization",
        "depreciation_and_amortization",
        "average_shares",
        "diluted_net_eps",
    ),
)
ASSETS = EarningsTable("balance_sheet_assets", "date", ("cash_and_equivalents",))
LIABILITIES = EarningsTable(
    "balance_sheet_liabilities",
    "date",
    ("notes_payable", "current_portion_long_term_debt", "long_term_debt"),
)
EQUITY = EarningsTable("balance_sheet_equity", "date", ("shares_outstanding",))
EPS = EarningsTable("eps_history", "period_end_date", ("reported", "estimate"), False)
TABLES = (INCOME, ASSETS, LIABILITIES, EQUITY, EPS)

Values = dict[str, Decimal | None]


def _parse(table: EarningsTable, row: SourceRow) -> tuple[date, Values]:
    day = parse_date(require(row, table.date_column), table.date_column)
    values: Values = {}
    for column in table.values:
        if column not in row:
            raise InvalidValue("missing_column", column)
        values[column] = parse_optional_decimal(row[column], column)
    return day, values


def rows_by_period_end(
    table: EarningsTable, rows: Sequence[SourceRow], rejected: RejectCounts
) -> dict[date, Values]:
    """Parsed rows keyed by period end; bad rows counted as '<table>.<reason>'."""
    parsed: dict[date, Values] = {}
    for row in rows:
        try:
            day, values = _parse(table, row)
        except InvalidValue as exc:
            rejected[f"{table.name}.{exc.reason}"] += 1
            continue
        if day in parsed:
            rejected[f"{table.name}.duplicate_date"] += 1
            continue
        parsed[day] = values
    return parsed


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _ebitda(income: Values) -> Decimal | None:
    """income_before_d&a, else income_after_d&a + d&a (docs/signals.md)."""
    before = income.get("income_before_depreciation_and_amortization")
    if before is not None:
        return before
    after = income.get("income_after_depreciation_and_amortization")
    amortization = income.get("depreciation_and_amortization")
    if after is None or amortization is None:
        return None
    return after + amortization


def _total_debt(liabilities: Values | None) -> Decimal | None:
    """Sum of the three debt lines with nulls as 0; None when the quarter has no row."""
    if liabilities is None:
        return None
    return sum((v or Decimal(0) for v in liabilities.values()), Decimal(0))


def join_quarter(
    day: date,
    income: Values | None,
    assets: Values | None,
    liabilities: Values | None,
    equity: Values | None,
    eps: Values | None,
) -> QuarterFundamentals:
    """One quarter from its rows in the five tables (any of them may be missing)."""
    income = income or {}
    shares = (equity or {}).get("shares_outstanding")
    if shares is None:
        shares = income.get("average_shares")
    return QuarterFundamentals(
        period_end_date=day,
        sales=_float(income.get("sales")),
        ebitda=_float(_ebitda(income)),
        ebit=_float(income.get("income_after_depreciation_and_amortization")),
        net_income=_float(income.get("net_income")),
        diluted_eps=_float(income.get("diluted_net_eps")),
        shares_outstanding=_float(shares),
        cash=_float((assets or {}).get("cash_and_equivalents")),
        total_debt=_float(_total_debt(liabilities)),
        eps_reported=_float((eps or {}).get("reported")),
        eps_estimate=_float((eps or {}).get("estimate")),
    )


async def fetch_fundamentals(
    client: DoltHubClient,
    earnings_db: str,
    ticker: str,
    start: date = DEFAULT_START,
    end: date | None = None,
) -> FetchResult[QuarterFundamentals]:
    """Quarters with start ≤ period end ≤ end (default today), one row per period end.

    A quarter exists when income_statement or eps_history has it; balance-sheet values are
    attached by exact period-end date. Only `period = 'Quarter'` rows are read.
    """
    symbol = normalize_ticker(ticker)
    stop = (end or date.today()) + timedelta(days=1)
    windows = multi_year_windows(start, stop, WINDOW_YEARS)
    rejected = RejectCounts()
    tables: dict[str, dict[date, Values]] = {}
    source_rows = queries = 0
    for table in TABLES:
        where = [equals("act_symbol", sql_string(symbol))]
        if table.quarterly_only:
            where.append(equals("period", sql_string("Quarter")))
        columns = (table.date_column, *table.values)
        query = WindowQuery(earnings_db, table.name, columns, table.date_column, where)
        pages = await fetch_windows(client, query, windows)
        source_rows += len(pages.rows)
        queries += pages.queries
        tables[table.name] = rows_by_period_end(table, pages.rows, rejected)
    quarter_ends = sorted(set(tables[INCOME.name]) | set(tables[EPS.name]))
    rows = [join_quarter(day, *(tables[t.name].get(day) for t in TABLES)) for day in quarter_ends]
    return FetchResult(rows=rows, rejected=rejected, source_rows=source_rows, queries=queries)
