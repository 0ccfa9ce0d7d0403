"""The SQL subset the fake DoltHub understands: exactly the query shapes ingest emits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.fakes.dolthub_data import OHLCV_TYPES, TableRow

STOCKS_DB = "post-no-preference/stocks"
EARNINGS_DB = "post-no-preference/earnings"
KEY_COLUMNS = ("act_symbol", "date", "period")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "ohlcv": tuple(OHLCV_TYPES),
    "split": ("act_symbol", "ex_date", "to_factor", "for_factor"),
    "dividend": ("act_symbol", "ex_date", "amount"),
    "symbol": (
        "act_symbol",
        "security_name",
        "listing_exchange",
        "market_category",
        "is_etf",
        "round_lot_size",
        "is_test_issue",
        "financial_status",
        "cqs_symbol",
        "nasdaq_symbol",
        "is_next_shares",
        "last_seen",
    ),
    "income_statement": (
        *KEY_COLUMNS,
        "sales",
        "income_after_depreciation_and_amortization",
        "net_income",
        "income_before_depreciation_and_amortization",
        "depreciation_and_amortization",
        "average_shares",
        "diluted_net_eps",
    ),
    "balance_sheet_assets": (*KEY_COLUMNS, "cash_and_equivalents", "total_assets"),
    "balance_sheet_liabilities": (
        *KEY_COLUMNS,
        "notes_payable",
        "current_portion_long_term_debt",
        "long_term_debt",
        "total_liabilities",
    ),
    "balance_sheet_equity": (*KEY_COLUMNS, "shares_outstanding"),
    "eps_history": ("act_symbol", "period_end_date", "reported", "estimate"),
}
DATABASE_TABLES = {
    STOCKS_DB: {"ohlcv", "split", "dividend", "symbol"},
    EARNINGS_DB: {
        "income_statement",
        "balance_sheet_assets",
        "balance_sheet_liabilities",
        "balance_sheet_equity",
        "eps_history",
    },
}
SELECT = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+`?(?P<table>\w+)`?"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>`?\w+`?(?:\s*,\s*`?\w+`?)*)(?:\s+(?P<direction>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(
    r"\s*`?(?P<column>\w+)`?\s*(?P<op>>=|<=|=|<|>)\s*(?P<value>'(?:[^'\\]|''|\\.)*')\s*(?:AND|$)",
    re.IGNORECASE,
)
COLUMN = re.compile(r"^`?(\w+)`?$")


class FakeSqlError(Exception):
    """SQL the fake (like DoltHub) refuses: HTTP 400, status Error."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: str

    def matches(self, row: TableRow) -> bool:
        cell = row.get(self.column)
        if cell is None:
            return False
        return {
            "=": cell == self.value,
            "<": cell < self.value,
            "<=": cell <= self.value,
            ">": cell > self.value,
            ">=": cell >= self.value,
        }[self.op]


@dataclass(frozen=True)
class ParsedQuery:
    table: str
    columns: tuple[str, ...]
    conditions: tuple[Condition, ...]
    order_by: tuple[str, ...]
    descending: bool
    limit: int | None


def unquote_literal(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace("''", "'"))


def parse_sql(sql: str) -> ParsedQuery:
    """The exact query shapes ingest emits; anything else is a 400 like a syntax error."""
    match = SELECT.fullmatch(sql)
    if not match:
        raise FakeSqlError(f"syntax error at position 0 near '{sql[:30]}'")
    table = match["table"].lower()
    if table not in TABLE_COLUMNS:
        raise FakeSqlError(f"table not found: {table}")
    known = TABLE_COLUMNS[table]
    columns = tuple(
        c for raw in match["columns"].split(",") for c in _column(raw.strip(), table, known)
    )
    conditions = _conditions(match["where"] or "", table, known)
    order = tuple(c.strip().strip("`") for c in (match["order"] or "").split(",") if c.strip())
    for column in order:
        if column not in known:
            raise FakeSqlError(f'column "{column}" could not be found in any table in scope')
    descending = (match["direction"] or "").upper() == "DESC"
    limit = int(match["limit"]) if match["limit"] else None
    return ParsedQuery(table, columns, conditions, order, descending, limit)


def _column(raw: str, table: str, known: tuple[str, ...]) -> tuple[str, ...]:
    if raw == "*":
        return known
    match = COLUMN.fullmatch(raw)
    if not match:
        raise FakeSqlError(f"unsupported select expression {raw!r}")
    if match[1] not in known:
        raise FakeSqlError(f'column "{match[1]}" could not be found in any table in scope')
    return (match[1],)


def _conditions(where: str, table: str, known: tuple[str, ...]) -> tuple[Condition, ...]:
    conditions = []
    position = 0
    while position < len(where):
        match = CONDITION.match(where, position)
        if not match or match.end() == position:
            raise FakeSqlError(f"syntax error near '{where[position : position + 30]}'")
        if match["column"] not in known:
            raise FakeSqlError(f'column "{match["column"]}" could not be found in table {table}')
        value = unquote_literal(match["value"])
        conditions.append(Condition(match["column"], match["op"], value))
        position = match.end()
    return tuple(conditions)
