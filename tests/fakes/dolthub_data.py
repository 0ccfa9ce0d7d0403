"""Deterministic DoltHub-shaped tables for the fake server: every value a string, like DoltHub."""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

TableRow = dict[str, str | None]

PRICE_START = date(2016, 1, 4)
FUNDAMENTALS_START = date(2011, 3, 31)
DEFAULT_END = date(2026, 11, 27)
HOLIDAYS = {(1, 1), (7, 4), (12, 25)}
NAMED_STOCKS = {
    "AAPL": "Apple Inc. - Common Stock",
    "MSFT": "Microsoft Corporation - Common Stock",
    "NVDA": "NVIDIA Corporation - Common Stock",
    "JPM": "JP Morgan Chase & Co. Common Stock",
    "BRK.B": "Berkshire Hathaway Inc. Class B",
    "KO": "Coca-Cola Company (The) Common Stock",
}
ETFS = {"SPY": "SPDR S&P 500 ETF Trust", "QQQ": "Invesco QQQ Trust, Series 1"}
TEST_ISSUES = ("ZVZZT", "ZXZZT", "ZWZZT")
EXCHANGES = ("Q", "N", "P", "A", "Z")

OHLCV_TYPES = {
    "date": "date",
    "act_symbol": "varchar(64)",
    "open": "decimal(16,4)",
    "high": "decimal(16,4)",
    "low": "decimal(16,4)",
    "close": "decimal(16,4)",
    "volume": "bigint",
}


def money(value: float, places: int = 2) -> str:
    """A decimal string the way Dolt renders DECIMAL columns."""
    return str(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places)))


@lru_cache(maxsize=64)
def business_days(start: date, end: date) -> tuple[date, ...]:
    return tuple(_business_days(start, end))


def _business_days(start: date, end: date) -> list[date]:
    days = []
    day = start
    while day <= end:
        if day.weekday() < 5 and (day.month, day.day) not in HOLIDAYS:
            days.append(day)
        day += timedelta(days=1)
    return days


def quarter_ends(start: date, end: date) -> list[date]:
    ends = []
    for year in range(start.year, end.year + 1):
        for month, day in ((3, 31), (6, 30), (9, 30), (12, 31)):
            if start <= date(year, month, day) <= end:
                ends.append(date(year, month, day))
    return ends


@dataclass(frozen=True)
class SplitEvent:
    ex_date: date
    to_factor: int
    for_factor: int

    @property
    def ratio(self) -> float:
        return self.to_factor / self.for_factor


@dataclass(frozen=True)
class DividendEvent:
    """A dividend in the share basis of its ex_date (the way DoltHub's rows are)."""

    ex_date: date
    amount: str


@dataclass
class FakeData:
    """All tables, generated lazily per ticker from (seed, ticker)."""

    seed: int = 7
    end: date = DEFAULT_END
    synthetic_symbols: int = 1200
    unknown: set[str] = field(default_factory=lambda: {"NODATA", "ZZZZ"})
    delisted: set[str] = field(default_factory=set)  # left out of the symbol table
    # (ticker, ISO date) bars DoltHub does not have: a ticker absent on a day.
    absent: set[tuple[str, str]] = field(default_factory=set)
    # Split rows beside the generated ones (the bars stay as generated).
    extra_splits: dict[str, list[SplitEvent]] = field(default_factory=dict)
    # Dividend rows beside (same ex_date: instead of) the generated ones.
    extra_dividends: dict[str, list[DividendEvent]] = field(default_factory=dict)

    def rng(self, ticker: str, topic: str) -> random.Random:
        return random.Random(f"{self.seed}:{ticker}:{topic}")

    def has_data(self, ticker: str) -> bool:
        return ticker not in self.unknown and ticker not in TEST_ISSUES

    def is_etf(self, ticker: str) -> bool:
        return ticker in ETFS

    def splits(self, ticker: str) -> list[SplitEvent]:
        return _splits(self.seed, self.end, ticker) if self.has_data(ticker) else []

    def ohlcv(self, ticker: str) -> list[TableRow]:
        rows = _ohlcv(self.seed, self.end, ticker) if self.has_data(ticker) else []
        return self._present(rows)

    def _present(self, rows: list[TableRow]) -> list[TableRow]:
        if not self.absent:
            return rows
        return [r for r in rows if (r["act_symbol"] or "", r["date"] or "") not in self.absent]

    def listed(self) -> list[str]:
        """Every symbol with data that a query over all symbols sees (delisted ones too)."""
        rows = _symbols(self.seed, self.synthetic_symbols)
        return [t for r in rows if self.has_data(t := r["act_symbol"] or "")]

    def ohlcv_from(self, first: str) -> list[TableRow]:
        """Every listed symbol's bars dated `first` or later, by (date, act_symbol)."""
        if first >= TAIL_START.isoformat():
            rows = _ohlcv_tails(self.seed, self.end, tuple(self.listed()))
        else:
            rows = sorted(
                (r for t in self.listed() for r in _ohlcv(self.seed, self.end, t)),
                key=lambda r: (r["date"] or "", r["act_symbol"] or ""),
            )
        start = bisect.bisect_left(rows, first, key=lambda r: r["date"] or "")
        return self._present(rows[start:])

    def split_rows_from(self, first: str) -> list[TableRow]:
        """Every listed symbol's splits with ex_date `first` or later."""
        rows = [r for t in self.listed() for r in self.split_rows(t)]
        return [r for r in rows if (r["ex_date"] or "") >= first]

    def dividend_rows(self, ticker: str) -> list[TableRow]:
        """The ticker's `dividend` rows by ex_date: amounts per share as of each ex_date."""
        if not self.has_data(ticker):
            return []
        events = {e.ex_date: e for e in _dividends(self.seed, self.end, ticker)}
        events.update({e.ex_date: e for e in self.extra_dividends.get(ticker, [])})
        return [
            {"act_symbol": ticker, "ex_date": day.isoformat(), "amount": events[day].amount}
            for day in sorted(events)
        ]

    def dividend_rows_from(self, first: str) -> list[TableRow]:
        """Every listed symbol's dividends with ex_date `first` or later."""
        rows = [r for t in self.listed() for r in self.dividend_rows(t)]
        return [r for r in rows if (r["ex_date"] or "") >= first]

    def earnings_from(self, table: str, first: str) -> list[TableRow]:
        """Every listed symbol's rows of an earnings table dated `first` or later."""
        column = "period_end_date" if table == "eps_history" else "date"
        rows = [r for t in self.listed() for r in self.earnings(t, table)]
        return [r for r in rows if (r[column] or "") >= first]

    def split_rows(self, ticker: str) -> list[TableRow]:
        return [
            {
                "act_symbol": ticker,
                "ex_date": s.ex_date.isoformat(),
                "to_factor": f"{s.to_factor}.00",
                "for_factor": f"{s.for_factor}.00",
            }
            for s in sorted(
                [*self.splits(ticker), *self.extra_splits.get(ticker, [])],
                key=lambda s: s.ex_date,
            )
        ]

    def earnings(self, ticker: str, table: str) -> list[TableRow]:
        if not self.has_data(ticker) or self.is_etf(ticker):
            return []
        return _earnings(self.seed, self.end, ticker)[table]

    def symbols(self) -> list[TableRow]:
        rows = _symbols(self.seed, self.synthetic_symbols)
        return [r for r in rows if r["act_symbol"] not in self.delisted]


@lru_cache(maxsize=256)
def _splits(seed: int, end: date, ticker: str) -> list[SplitEvent]:
    rng = random.Random(f"{seed}:{ticker}:splits")
    days = business_days(PRICE_START + timedelta(days=400), end - timedelta(days=30))
    events = []
    if rng.random() < 0.35:
        to_factor, for_factor = rng.choice([(2, 1), (3, 1), (4, 1), (3, 2), (1, 10)])
        events.append(SplitEvent(rng.choice(days), to_factor, for_factor))
    return events


@lru_cache(maxsize=2048)
def _dividends(seed: int, end: date, ticker: str) -> list[DividendEvent]:
    """About half the symbols pay quarterly from some date on, raised about 5% a year."""
    rng = random.Random(f"{seed}:{ticker}:dividends")
    if rng.random() >= 0.5:
        return []
    splits = _splits(seed, end, ticker)
    amount = rng.uniform(0.1, 1.2)
    day = PRICE_START + timedelta(days=rng.randrange(0, 1500))
    events = []
    while day <= end:
        while day.weekday() >= 5 or (day.month, day.day) in HOLIDAYS:
            day += timedelta(days=1)
        raw = math.prod(s.ratio for s in splits if day < s.ex_date)
        events.append(DividendEvent(day, money(amount * raw, 5)))
        amount *= 1.0125
        day += timedelta(days=91)
    return events


@lru_cache(maxsize=256)
def _ohlcv(seed: int, end: date, ticker: str) -> list[TableRow]:
    return _walk(seed, end, ticker, PRICE_START)


# Queries over every symbol read the last months from here: one walk per symbol per session.
TAIL_START = date(2026, 9, 1)


@lru_cache(maxsize=8)
def _ohlcv_tails(seed: int, end: date, tickers: tuple[str, ...]) -> list[TableRow]:
    rows = [r for t in tickers for r in _walk(seed, end, t, TAIL_START)]
    return sorted(rows, key=lambda r: (r["date"] or "", r["act_symbol"] or ""))


def _walk(seed: int, end: date, ticker: str, since: date) -> list[TableRow]:
    """A random walk in today's share basis, un-adjusted by the ticker's splits (raw prices).

    Walked from PRICE_START whatever `since` is (the values do not depend on it); only the
    rows from `since` on are rendered.
    """
    rng = random.Random(f"{seed}:{ticker}:prices")
    splits = _splits(seed, end, ticker)
    close = rng.uniform(15.0, 400.0)
    rows: list[TableRow] = []
    for day in business_days(PRICE_START, end):
        open_ = close * math.exp(rng.gauss(0, 0.004))
        close = open_ * math.exp(rng.gauss(0.0003, 0.017))
        high = max(open_, close) * (1 + abs(rng.gauss(0, 0.006)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, 0.006)))
        volume_draw = rng.lognormvariate(14.5, 0.6)
        if day < since:
            continue
        raw = math.prod(s.ratio for s in splits if day < s.ex_date)
        rows.append(
            {
                "date": day.isoformat(),
                "act_symbol": ticker,
                "open": money(open_ * raw, 4),
                "high": money(high * raw, 4),
                "low": money(low * raw, 4),
                "close": money(close * raw, 4),
                "volume": str(int(volume_draw / raw)),
            }
        )
    return rows


@lru_cache(maxsize=128)
def _earnings(seed: int, end: date, ticker: str) -> dict[str, list[TableRow]]:
    rng = random.Random(f"{seed}:{ticker}:earnings")
    sales = rng.uniform(2e8, 2e10)
    shares = rng.uniform(5e7, 3e9)
    margin = rng.uniform(0.12, 0.35)
    tables: dict[str, list[TableRow]] = {
        name: []
        for name in (
            "income_statement",
            "balance_sheet_assets",
            "balance_sheet_liabilities",
            "balance_sheet_equity",
            "eps_history",
        )
    }
    year_sales = 0.0
    for day in quarter_ends(FUNDAMENTALS_START, end - timedelta(days=30)):
        sales *= math.exp(rng.gauss(0.015, 0.05))
        shares *= math.exp(rng.gauss(-0.002, 0.004))
        quarter = _quarter(rng, ticker, day, sales, shares, margin)
        for name, row in quarter.items():
            tables[name].append(row)
        year_sales += sales
        if day.month == 12:  # an annual row the fetcher must ignore (period = 'Year')
            annual = dict(quarter["income_statement"], period="Year", sales=money(year_sales))
            tables["income_statement"].append(annual)
            year_sales = 0.0
    return tables


def _maybe(rng: random.Random, probability: float, value: str) -> str | None:
    return None if rng.random() < probability else value


def _quarter(
    rng: random.Random, ticker: str, day: date, sales: float, shares: float, margin: float
) -> dict[str, TableRow]:
    ebitda = sales * (margin + rng.gauss(0, 0.04))
    amortization = sales * rng.uniform(0.02, 0.06)
    ebit = ebitda - amortization
    net_income = ebit * rng.uniform(0.6, 0.85)
    eps = net_income / shares
    key = {"act_symbol": ticker, "date": day.isoformat(), "period": "Quarter"}
    return {
        "income_statement": {
            **key,
            "sales": money(sales),
            "income_after_depreciation_and_amortization": money(ebit),
            "net_income": money(net_income),
            "income_before_depreciation_and_amortization": _maybe(rng, 0.3, money(ebitda)),
            "depreciation_and_amortization": money(amortization),
            "average_shares": money(shares * 1.01, 0),
            "diluted_net_eps": money(eps),
        },
        "balance_sheet_assets": {
            **key,
            "cash_and_equivalents": money(sales * rng.uniform(0.2, 1.5)),
            "total_assets": money(sales * rng.uniform(4, 8)),
        },
        "balance_sheet_liabilities": {
            **key,
            "notes_payable": _maybe(rng, 0.5, money(sales * rng.uniform(0, 0.1))),
            "current_portion_long_term_debt": _maybe(rng, 0.2, money(sales * 0.05)),
            "long_term_debt": money(sales * rng.uniform(0.5, 2.0)),
            "total_liabilities": money(sales * rng.uniform(2, 5)),
        },
        "balance_sheet_equity": {
            **key,
            "shares_outstanding": _maybe(rng, 0.1, money(shares, 0)),
        },
        "eps_history": {
            "act_symbol": ticker,
            "period_end_date": day.isoformat(),
            "reported": money(eps),
            "estimate": money(eps * rng.uniform(0.9, 1.1)),
        },
    }


@lru_cache(maxsize=8)
def _symbols(seed: int, synthetic: int) -> list[TableRow]:
    rng = random.Random(f"{seed}:symbols")
    entries = [(t, n, False, False) for t, n in NAMED_STOCKS.items()]
    entries += [(t, n, True, False) for t, n in ETFS.items()]
    entries += [(t, "NASDAQ TEST STOCK", False, True) for t in TEST_ISSUES]
    entries += [
        (f"S{i:04d}", f"Synthetic {i:04d} Corp Common Stock", False, False)
        for i in range(synthetic)
    ]
    rows = []
    for ticker, name, etf, test in sorted(entries):
        rows.append(
            {
                "act_symbol": ticker,
                "security_name": name,
                "listing_exchange": "P" if etf else rng.choice(EXCHANGES),
                "market_category": rng.choice(["Q", "G", "S", None]),
                "is_etf": "1" if etf else "0",
                "round_lot_size": "100",
                "is_test_issue": "1" if test else "0",
                "financial_status": rng.choice(["N", None]),
                "cqs_symbol": None,
                "nasdaq_symbol": ticker,
                "is_next_shares": "0",
                "last_seen": "2026-11-27",
            }
        )
    return rows
