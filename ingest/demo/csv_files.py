"""The offline demo data set: 30 synthetic stocks × 10½ years as DoltHub-shaped CSV files.

Every number is generated from a seeded model (no network, same bytes every run). A stock's
price is its EV multiple path × its trailing-twelve-month EBITDA (or sales) as the evaluator
will see it, plus mean-reverting noise, so each stock's valuation regime, trend and earnings
direction on the demo's dates are designed rather than accidental (see `demo_stocks`).
Tickers end in `.DEMO` so they can never collide with a real listing or a DoltHub row.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from ingest.demo.stocks import DEMO_STOCKS, DemoStock

START = date(2015, 1, 2)
END = date(2025, 6, 30)
FIRST_QUARTER_END = date(2012, 12, 31)
LAST_QUARTER_END = date(2025, 3, 31)
REPORT_LAG = timedelta(days=45)  # A quarter is usable 45 days after its period end
HOLIDAYS = ((1, 1), (7, 4), (12, 25))
EBITDA_MARGIN = 0.28
DA_SHARE = 0.2  # depreciation & amortization as a share of |EBITDA|
TAX_KEEP = 0.78  # net income kept after interest and tax
NOISE_PERSISTENCE = 0.97

CsvRow = dict[str, str]

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
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
    "ohlcv": ("date", "act_symbol", "open", "high", "low", "close", "volume"),
    "split": ("act_symbol", "ex_date", "to_factor", "for_factor"),
    "dividend": ("act_symbol", "ex_date", "amount"),
    "income_statement": (
        "act_symbol",
        "date",
        "period",
        "sales",
        "income_before_depreciation_and_amortization",
        "depreciation_and_amortization",
        "income_after_depreciation_and_amortization",
        "net_income",
        "average_shares",
        "diluted_net_eps",
    ),
    "balance_sheet_assets": (
        "act_symbol",
        "date",
        "period",
        "cash_and_equivalents",
        "total_assets",
    ),
    "balance_sheet_liabilities": (
        "act_symbol",
        "date",
        "period",
        "notes_payable",
        "current_portion_long_term_debt",
        "long_term_debt",
        "total_liabilities",
    ),
    "balance_sheet_equity": ("act_symbol", "date", "period", "shares_outstanding"),
    "eps_history": ("act_symbol", "period_end_date", "reported", "estimate"),
}


def trading_days(first: date, last: date) -> list[date]:
    """Weekdays from first to last, without New Year's Day, 4 July and Christmas."""
    days, day = [], first
    while day <= last:
        if day.weekday() < 5 and (day.month, day.day) not in HOLIDAYS:
            days.append(day)
        day += timedelta(days=1)
    return days


def quarter_ends(first: date, last: date) -> list[date]:
    """Calendar quarter ends from `first` to `last` inclusive."""
    ends: list[date] = []
    year, quarter = first.year, (first.month - 1) // 3
    while True:
        month = 3 * quarter + 3
        end = date(year, month, 31 if month in (3, 12) else 30)
        if end > last:
            return ends
        if end >= first:
            ends.append(end)
        quarter = (quarter + 1) % 4
        year += quarter == 0


def years_between(a: date, b: date) -> float:
    return (b - a).days / 365.25


def seeded(ticker: str) -> random.Random:
    """A generator seeded by the ticker alone: a stock's data never depends on the others."""
    return random.Random(int.from_bytes(hashlib.sha256(ticker.encode()).digest()[:8], "big"))


@dataclass(frozen=True)
class Quarter:
    """One generated fiscal quarter, in the as-reported share basis."""

    period_end: date
    sales: float
    ebitda: float
    net_income: float
    shares: float
    eps: float

    @property
    def usable_from(self) -> date:
        return self.period_end + REPORT_LAG


@dataclass
class Series:
    """Everything generated for one stock."""

    stock: DemoStock
    days: list[date] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    quarters: list[Quarter] = field(default_factory=list)


def growth_factor(stock: DemoStock, day: date) -> float:
    """exp(∫ growth) from FIRST_QUARTER_END to `day` over the stock's growth segments."""
    total = 0.0
    segments = list(stock.growth)
    for i, (since, rate) in enumerate(segments):
        until = segments[i + 1][0] if i + 1 < len(segments) else day
        lo, hi = max(since, FIRST_QUARTER_END), min(until, day)
        if hi > lo:
            total += rate * years_between(lo, hi)
    return math.exp(total)


def knot_factor(knots: Sequence[tuple[date, float]], day: date) -> float:
    """Log-linear interpolation through (date, factor) knots; flat outside them; 1 if none."""
    if not knots:
        return 1.0
    if day <= knots[0][0]:
        return knots[0][1]
    for (d0, f0), (d1, f1) in zip(knots, knots[1:], strict=False):
        if day <= d1:
            t = (day - d0).days / (d1 - d0).days
            return math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))
    return knots[-1][1]


def multiple_on(stock: DemoStock, day: date) -> float:
    """The designed EV multiple: a slow cycle around `multiple`, times the story's moves."""
    turns = years_between(stock.anchor, day) / stock.cycle_years + stock.cycle_phase
    cycle = math.exp(stock.swing * math.sin(2 * math.pi * turns))
    return stock.multiple * cycle * knot_factor(stock.moves, day)


def shares_on(stock: DemoStock, day: date) -> float:
    """Shares outstanding in the basis of `day` (a split multiplies them by to/for)."""
    if stock.split and day >= stock.split[0]:
        return stock.shares * stock.split[1] / stock.split[2]
    return stock.shares


def build_quarters(stock: DemoStock) -> list[Quarter]:
    if not stock.has_fundamentals:
        return []
    first = max(
        FIRST_QUARTER_END,
        stock.listed - timedelta(days=round(365.25 * stock.reported_years_before_listing)),
    )
    quarters = []
    for end in quarter_ends(first, LAST_QUARTER_END):
        flow = stock.base_quarter * growth_factor(stock, end - REPORT_LAG)
        if stock.pre_revenue:
            sales, ebitda = 0.0, -flow
        elif stock.ev_sales:
            # Losses narrow as the business scales: margin from -30% towards -5%.
            margin = -0.30 + 0.25 * min(1.0, years_between(FIRST_QUARTER_END, end) / 12)
            sales, ebitda = flow, flow * margin
        else:
            sales, ebitda = flow / EBITDA_MARGIN, flow
        operating = ebitda - DA_SHARE * abs(ebitda)
        net = (operating * TAX_KEEP if operating > 0 else operating) * stock.eps_shock(end)
        shares = shares_on(stock, end)
        quarters.append(Quarter(end, sales, ebitda, net, shares, net / shares))
    return quarters


class UsableTtm:
    """The TTM EBITDA (or sales) the evaluator sees on a day: the 4 latest usable quarters."""

    def __init__(self, quarters: Sequence[Quarter], ev_sales: bool) -> None:
        self.usable_from = [q.usable_from for q in quarters]
        values = [q.sales if ev_sales else q.ebitda for q in quarters]
        self.ttm = [sum(values[k - 3 : k + 1]) if k >= 3 else None for k in range(len(values))]

    def on(self, day: date) -> float | None:
        count = bisect.bisect_right(self.usable_from, day)
        return self.ttm[count - 1] if count else None


def build_series(stock: DemoStock) -> Series:
    """Daily closes and quarters for one stock, deterministic in its ticker."""
    rng = seeded(stock.ticker)
    series = Series(stock, quarters=build_quarters(stock))
    debt, cash = stock.debt_and_cash()
    ttm = UsableTtm(series.quarters, stock.ev_sales)
    noise = 0.0
    for day in trading_days(max(START, stock.listed), END):
        anchor = ttm.on(day)
        if anchor is None or anchor <= 0:
            # No usable positive base (ETF, pre-revenue, too new): value a smooth flow instead.
            anchor = 4 * abs(stock.base_quarter) * growth_factor(stock, day)
        enterprise = multiple_on(stock, day) * anchor
        noise = NOISE_PERSISTENCE * noise + rng.gauss(0.0, stock.noise)
        equity = max(enterprise - debt + cash, 0.05 * enterprise)
        close = equity / shares_on(stock, day) * math.exp(noise + rng.gauss(0.0, 0.003))
        series.days.append(day)
        series.closes.append(round(close, 2))
    return series


# -- CSV rows ------------------------------------------------------------------------------


def money(value: float) -> str:
    return f"{value:.2f}"


def price_rows(series: Series) -> Iterator[CsvRow]:
    rng = seeded(series.stock.ticker + "/ohlc")
    previous = series.closes[0]
    for day, close in zip(series.days, series.closes, strict=True):
        open_ = round(previous * (1 + rng.gauss(0.0, 0.004)), 2)
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, 0.006)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, 0.006)))
        volume = int(series.stock.volume * math.exp(rng.gauss(0.0, 0.35)))
        yield {
            "date": day.isoformat(),
            "act_symbol": series.stock.ticker,
            "open": money(open_),
            "high": money(high),
            "low": money(low),
            "close": money(close),
            "volume": str(volume),
        }
        previous = close


def symbol_row(stock: DemoStock) -> CsvRow:
    return {
        "act_symbol": stock.ticker,
        "security_name": stock.name,
        "listing_exchange": stock.exchange,
        "market_category": "Q" if stock.exchange == "Q" else "",
        "is_etf": "Y" if stock.is_etf else "N",
        "round_lot_size": "100",
        "is_test_issue": "N",
        "financial_status": "N",
        "cqs_symbol": "" if stock.exchange == "Q" else stock.ticker,
        "nasdaq_symbol": stock.ticker,
        "is_next_shares": "N",
        "last_seen": END.isoformat(),
    }


def fundamental_rows(series: Series) -> dict[str, list[CsvRow]]:
    """income_statement, balance sheets and eps_history rows, quarterly (`period = 'Quarter'`)."""
    stock = series.stock
    tables: dict[str, list[CsvRow]] = {name: [] for name in TABLE_COLUMNS}
    debt, cash = stock.debt_and_cash()
    for q in series.quarters:
        key = {"act_symbol": stock.ticker, "date": q.period_end.isoformat(), "period": "Quarter"}
        amortization = DA_SHARE * abs(q.ebitda)
        tables["income_statement"].append(
            key
            | {
                "sales": money(q.sales),
                "income_before_depreciation_and_amortization": money(q.ebitda),
                "depreciation_and_amortization": money(amortization),
                "income_after_depreciation_and_amortization": money(q.ebitda - amortization),
                "net_income": money(q.net_income),
                "average_shares": f"{q.shares:.0f}",
                "diluted_net_eps": f"{q.eps:.4f}",
            }
        )
        tables["balance_sheet_assets"].append(
            key | {"cash_and_equivalents": money(cash), "total_assets": money(3 * (debt + cash))}
        )
        tables["balance_sheet_liabilities"].append(
            key
            | {
                "notes_payable": money(0.1 * debt),
                "current_portion_long_term_debt": money(0.1 * debt),
                "long_term_debt": money(0.8 * debt),
                "total_liabilities": money(1.5 * debt),
            }
        )
        tables["balance_sheet_equity"].append(key | {"shares_outstanding": f"{q.shares:.0f}"})
        tables["eps_history"].append(
            {
                "act_symbol": stock.ticker,
                "period_end_date": q.period_end.isoformat(),
                "reported": f"{q.eps:.2f}",
                "estimate": f"{q.eps * 0.97 if q.eps > 0 else q.eps * 1.03:.2f}",
            }
        )
    return {name: rows for name, rows in tables.items() if rows}


def split_row(stock: DemoStock) -> CsvRow | None:
    if stock.split is None:
        return None
    ex_date, to_factor, for_factor = stock.split
    return {
        "act_symbol": stock.ticker,
        "ex_date": ex_date.isoformat(),
        "to_factor": f"{to_factor:.4f}",
        "for_factor": f"{for_factor:.4f}",
    }


# Regular dividends go ex around the 14th of these months.
DIVIDEND_MONTHS = (2, 5, 8, 11)


def dividends_of(stock: DemoStock) -> list[tuple[date, float]]:
    """(ex_date, amount per share as of that date) of the stock's dividends, by ex_date."""
    if stock.dividend is None:
        return []
    paid: dict[date, float] = {}
    for year in range(START.year, END.year + 1):
        for month in DIVIDEND_MONTHS:
            ex_date = next_trading_day(date(year, month, 14))
            if max(START, stock.listed) <= ex_date <= END:
                amount = stock.dividend * 1.05 ** (year - START.year)
                for since, factor in stock.dividend_moves:
                    amount *= factor if ex_date >= since else 1.0
                paid[ex_date] = amount
    paid.update(stock.special_dividends)
    # Amounts are per share of their day: before a split, a share was to/for of today's.
    return [(day, paid[day] * _split_ratio(stock, day)) for day in sorted(paid)]


def _split_ratio(stock: DemoStock, day: date) -> float:
    if stock.split and day < stock.split[0]:
        return stock.split[1] / stock.split[2]
    return 1.0


def next_trading_day(day: date) -> date:
    while day.weekday() >= 5 or (day.month, day.day) in HOLIDAYS:
        day += timedelta(days=1)
    return day


def dividend_rows(stock: DemoStock) -> list[CsvRow]:
    return [
        {"act_symbol": stock.ticker, "ex_date": day.isoformat(), "amount": f"{amount:.4f}"}
        for day, amount in dividends_of(stock)
    ]


def demo_tables(stocks: Sequence[DemoStock] = DEMO_STOCKS) -> dict[str, list[CsvRow]]:
    """Every table's rows for `stocks`, in a stable order."""
    tables: dict[str, list[CsvRow]] = {name: [] for name in TABLE_COLUMNS}
    for stock in stocks:
        series = build_series(stock)
        tables["symbol"].append(symbol_row(stock))
        tables["ohlcv"].extend(price_rows(series))
        for name, rows in fundamental_rows(series).items():
            tables[name].extend(rows)
        split = split_row(stock)
        if split:
            tables["split"].append(split)
        tables["dividend"].extend(dividend_rows(stock))
    return tables


def write_demo_csvs(directory: Path, stocks: Sequence[DemoStock] = DEMO_STOCKS) -> dict[str, int]:
    """Write `<table>.csv` files (DoltHub column names) into `directory`; rows per file."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in demo_tables(stocks).items():
        path = directory / f"{name}.csv"
        partial = path.with_suffix(".csv.partial")
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS[name], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        partial.replace(path)  # never leave a half-written file for import-csv to read
        counts[f"{name}.csv"] = len(rows)
    return counts
