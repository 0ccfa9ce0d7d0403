"""Typed fetchers end to end over real HTTP to the fake DoltHub, plus exact parsing rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from datetime import date
from decimal import Decimal

import pytest

from ingest.dolthub.client import DoltHubClient, DoltHubDeadlineError, DoltHubUnavailable
from ingest.dolthub.earnings import fetch_fundamentals
from ingest.dolthub.sql import sql_date, sql_string
from ingest.dolthub.stocks import (
    TickerNotInSource,
    fetch_dividends,
    fetch_price_bars,
    fetch_splits,
    fetch_symbol,
    iter_symbols,
)
from ingest.dolthub.values import (
    InvalidValue,
    parse_date,
    parse_decimal,
    parse_int,
    price_values,
    validate_rows,
)
from services.errors import BadUserInput
from services.market.records import Dividend, PriceBar
from tests.fakes.dolthub_data import TEST_ISSUES, DividendEvent
from tests.fakes.dolthub_server import EARNINGS_DB, STOCKS_DB, FakeDoltHub

Factory = Callable[..., DoltHubClient]
START, END = date(2016, 1, 1), date(2026, 11, 27)


def expected_bars(fake: FakeDoltHub, ticker: str, start: date, end: date) -> list[PriceBar]:
    """Ground truth straight from the fake's table (strings → exact Decimal → float)."""
    bars = []
    for r in fake.data.ohlcv(ticker):
        if start.isoformat() <= (r["date"] or "") <= end.isoformat():
            o, h, lo, c = (float(Decimal(r[k] or "")) for k in ("open", "high", "low", "close"))
            bars.append(
                PriceBar(date.fromisoformat(r["date"] or ""), o, h, lo, c, int(r["volume"] or ""))
            )
    return bars


async def test_price_bars_one_query_per_year(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await fetch_price_bars(dolthub_client, STOCKS_DB, "aapl ", START, END)
    assert result.rows == expected_bars(fake_dolthub, "AAPL", START, END)
    assert len(result.rows) > 2500
    assert result.queries == 11 and len(fake_dolthub.requests) == 11
    assert not result.rejected
    sqls = sorted(r.sql or "" for r in fake_dolthub.requests)
    assert "`date` >= '2016-01-01' AND `date` < '2017-01-01' ORDER BY `date`" in sqls[0]
    assert all("`act_symbol` = 'AAPL'" in s for s in sqls)


async def test_end_date_is_inclusive_and_window_may_be_empty(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    friday, saturday, sunday = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    one = await fetch_price_bars(dolthub_client, STOCKS_DB, "MSFT", friday, friday)
    assert [b.date for b in one.rows] == [friday]
    weekend = await fetch_price_bars(dolthub_client, STOCKS_DB, "MSFT", saturday, sunday)
    assert weekend.rows == [] and weekend.is_empty  # "no rows in this window": not an error


async def test_row_limit_is_paged_not_trusted(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.row_limit = 40
    result = await fetch_price_bars(dolthub_client, STOCKS_DB, "NVDA", START, END)
    assert result.rows == expected_bars(fake_dolthub, "NVDA", START, END)
    assert result.queries > 11 * 6
    assert not result.rejected  # no duplicate dates across pages


async def test_deadline_shrinks_windows_until_complete(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.deadline_days = 50
    result = await fetch_price_bars(dolthub_client, STOCKS_DB, "JPM", START, END)
    assert result.rows == expected_bars(fake_dolthub, "JPM", START, END)
    spans = [_span(r.sql or "") for r in fake_dolthub.requests]
    assert max(spans) > 300  # it started with whole years
    assert dolthub_client.stats.deadlines > 11
    assert result.queries == sum(1 for s in spans if s <= 50)


def _span(sql: str) -> int:
    lower = sql.split("`date` >= '")[1][:10]
    upper = sql.split("`date` < '")[1][:10]
    return (date.fromisoformat(upper) - date.fromisoformat(lower)).days


async def test_deadline_below_minimum_window_is_raised(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.deadline_days = 3
    with pytest.raises(DoltHubDeadlineError):
        await fetch_price_bars(dolthub_client, STOCKS_DB, "JPM", date(2020, 1, 1), date(2020, 2, 1))


async def test_corrupt_rows_rejected_and_counted(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.corrupt_every = 15
    result = await fetch_price_bars(dolthub_client, STOCKS_DB, "KO", START, END)
    expected_rejects = fake_dolthub.expected_rejects("KO", START, END)
    assert result.rejected == expected_rejects
    assert set(expected_rejects) == {
        "non_finite",
        "non_positive_price",
        "missing_column",
        "high_below_low",
        "bad_date",
        "bad_number",
    }
    clean = [
        b
        for b in expected_bars(fake_dolthub, "KO", START, END)
        if fake_dolthub.corruption_of("KO", b.date.isoformat()) is None
    ]
    assert result.rows == clean
    assert result.source_rows == len(clean) + result.rejected.rejected
    assert all(b.low > 0 and b.high >= b.low and b.close == b.close for b in result.rows)


@pytest.mark.parametrize(
    "evil", ["A'; DROP TABLE x;--", "AAPL' OR '1'='1", "A\\", "ÅAPL", "", "A B", "TOOLONGTICKER"]
)
async def test_injection_never_reaches_sql(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient, evil: str
) -> None:
    with pytest.raises(BadUserInput):
        await fetch_price_bars(dolthub_client, STOCKS_DB, evil, START, END)
    with pytest.raises(BadUserInput):
        await fetch_fundamentals(dolthub_client, EARNINGS_DB, evil)
    with pytest.raises(BadUserInput):
        await fetch_splits(dolthub_client, STOCKS_DB, evil)
    with pytest.raises(BadUserInput):
        await fetch_symbol(dolthub_client, STOCKS_DB, evil)
    assert fake_dolthub.requests == []


def test_sql_literals_escape_and_type_check() -> None:
    assert sql_string("O'Neil") == "'O''Neil'"
    assert sql_string("back\\slash") == "'back\\\\slash'"
    assert sql_date(date(2024, 2, 29)) == "'2024-02-29'"
    with pytest.raises(TypeError):
        sql_date("2024-01-01'; --")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sql_string("a\x00b")


async def test_unknown_ticker_is_permanent_not_an_empty_window(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    with pytest.raises(TickerNotInSource) as caught:
        await fetch_price_bars(dolthub_client, STOCKS_DB, "NODATA", START, END, require_rows=True)
    assert caught.value.transient is False
    assert "NODATA" in caught.value.message
    quiet = await fetch_price_bars(dolthub_client, STOCKS_DB, "NODATA", START, END)
    assert quiet.is_empty
    known = await fetch_price_bars(dolthub_client, STOCKS_DB, "KO", START, END, require_rows=True)
    assert known.rows


async def test_corrupt_only_rows_still_count_as_present(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    """A ticker whose rows are all bad is not 'unknown': the source has rows."""
    fake_dolthub.switches.corrupt_every = 1
    result = await fetch_price_bars(
        dolthub_client, STOCKS_DB, "KO", date(2024, 1, 1), date(2024, 3, 1), require_rows=True
    )
    assert result.rows == [] and result.source_rows > 30
    assert result.rejected.rejected == result.source_rows


async def test_fundamentals_follow_spec_definitions(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "MSFT")
    income = fake_dolthub.data.earnings("MSFT", "income_statement")
    quarters = [r for r in income if r["period"] == "Quarter"]
    assert len(income) > len(quarters) > 60  # annual rows exist and are ignored
    assert [q.period_end_date.isoformat() for q in result.rows] == [r["date"] for r in quarters]
    tables = {
        name: {r["date"]: r for r in fake_dolthub.data.earnings("MSFT", name)}
        for name in ("balance_sheet_assets", "balance_sheet_liabilities", "balance_sheet_equity")
    }
    fallbacks = {"ebitda": 0, "shares": 0}
    for quarter, row in zip(result.rows, quarters, strict=True):
        day = row["date"]
        if row["income_before_depreciation_and_amortization"] is None:
            fallbacks["ebitda"] += 1
            want = Decimal(row["income_after_depreciation_and_amortization"] or "") + Decimal(
                row["depreciation_and_amortization"] or ""
            )
        else:
            want = Decimal(row["income_before_depreciation_and_amortization"])
        assert quarter.ebitda == float(want)
        equity = tables["balance_sheet_equity"][day]["shares_outstanding"]
        fallbacks["shares"] += equity is None
        assert quarter.shares_outstanding == float(equity or row["average_shares"] or "")
        debt = tables["balance_sheet_liabilities"][day]
        lines = ("notes_payable", "current_portion_long_term_debt", "long_term_debt")
        assert quarter.total_debt == float(sum(Decimal(debt[c] or 0) for c in lines))
        assert quarter.cash == float(
            tables["balance_sheet_assets"][day]["cash_and_equivalents"] or ""
        )
        assert quarter.sales == float(row["sales"] or "")
        assert quarter.diluted_eps == float(row["diluted_net_eps"] or "")
        assert quarter.eps_reported is not None and quarter.eps_estimate is not None
    assert fallbacks["ebitda"] > 0 and fallbacks["shares"] > 0  # both branches exercised
    assert not result.rejected


async def test_corrupt_fundamentals_rows_rejected_by_table_and_reason(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    clean = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "NVDA")
    fake_dolthub.switches.corrupt_every = 2
    fake_dolthub.switches.corrupt_earnings_every = 0  # ohlcv only: earnings untouched
    assert await fetch_fundamentals(dolthub_client, EARNINGS_DB, "NVDA") == clean
    fake_dolthub.switches.corrupt_earnings_every = None  # follow corrupt_every ...
    fake_dolthub.switches.corrupt_every = 6
    dirty = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "NVDA")
    expected = fake_dolthub.expected_earnings_rejects("NVDA")
    assert dirty.rejected == expected
    assert {r.split(".")[1] for r in expected} == {"non_finite", "bad_number", "missing_column"}

    # A bad row loses only its own table's values; a quarter goes only if both of the
    # tables that define quarters (income_statement, eps_history) were bad for it.
    def gone(day: date) -> bool:
        return all(
            fake_dolthub.earnings_corruption_of(t, "NVDA", day.isoformat())
            for t in ("income_statement", "eps_history")
        )

    kept = [q.period_end_date for q in clean.rows if not gone(q.period_end_date)]
    assert [q.period_end_date for q in dirty.rows] == kept
    clean_by_day = {q.period_end_date: q for q in clean.rows}
    changed = [q for q in dirty.rows if q != clean_by_day[q.period_end_date]]
    assert 0 < len(changed) <= expected.total()
    for quarter in dirty.rows:
        values = astuple(quarter)[1:]
        assert all(v is None or v == v for v in values)  # no NaN leaks through


async def test_fundamentals_page_through_row_limit(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    full = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "AAPL")
    fake_dolthub.switches.row_limit = 5
    paged = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "AAPL")
    assert paged.rows == full.rows
    assert paged.queries > full.queries


async def test_etf_has_no_fundamentals_without_error(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await fetch_fundamentals(dolthub_client, EARNINGS_DB, "SPY", date(2020, 1, 1))
    assert result.rows == [] and result.is_empty


async def test_splits_match_source(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await fetch_splits(dolthub_client, STOCKS_DB, "JPM", end=END)
    truth = fake_dolthub.data.splits("JPM")
    assert truth, "the seed gives JPM a split"
    assert [(s.ex_date, s.to_factor, s.for_factor) for s in result.rows] == [
        (t.ex_date, float(t.to_factor), float(t.for_factor)) for t in truth
    ]
    none = await fetch_splits(dolthub_client, STOCKS_DB, "AAPL", end=END)
    assert none.rows == []


async def test_iter_symbols_pages_and_skips_test_issues(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    symbols = [s async for s in iter_symbols(dolthub_client, STOCKS_DB, page_size=100)]
    table = fake_dolthub.data.symbols()
    tickers = [s.ticker for s in symbols]
    assert tickers == sorted(r["act_symbol"] or "" for r in table if r["is_test_issue"] == "0")
    assert not set(TEST_ISSUES) & set(tickers)
    assert len(fake_dolthub.requests) == len(table) // 100 + 1
    by_ticker = {s.ticker: s for s in symbols}
    assert by_ticker["SPY"].is_etf and not by_ticker["AAPL"].is_etf
    assert by_ticker["AAPL"].name == "Apple Inc. - Common Stock"


async def test_fetch_symbol(fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient) -> None:
    spy = await fetch_symbol(dolthub_client, STOCKS_DB, "spy")
    assert spy is not None and spy.is_etf and spy.exchange == "NYSE Arca"
    test_issue = await fetch_symbol(dolthub_client, STOCKS_DB, "ZVZZT")
    assert test_issue is not None and test_issue.is_test_issue
    assert await fetch_symbol(dolthub_client, STOCKS_DB, "NODATA") is None


@pytest.mark.parametrize("raw", [None, "", "  ", "NaN", "nan", "Infinity", "-inf", "1.2.3", "abc"])
def test_parse_decimal_rejects(raw: str | None) -> None:
    with pytest.raises(InvalidValue):
        parse_decimal(raw)


def test_parse_exact_values() -> None:
    assert parse_decimal("156.2900") == Decimal("156.2900")
    assert str(parse_decimal("156.2900")) == "156.2900"
    assert parse_decimal("-0.01") == Decimal("-0.01")
    assert parse_int("9007199254740993") == 9007199254740993  # beyond float precision
    assert parse_int("1200.000") == 1200
    assert parse_date("2024-02-29") == date(2024, 2, 29)
    assert parse_date("2024-02-29 00:00:00") == date(2024, 2, 29)
    for bad in ("12.5", "1e3", "NaN"):
        with pytest.raises(InvalidValue):
            parse_int(bad)
    for bad in ("2023-02-29", "2024-1-1", "yesterday", "2024-01-01 10:00:00"):
        with pytest.raises(InvalidValue):
            parse_date(bad)


def test_validate_rows_counts_by_reason_and_never_raises() -> None:
    good: dict[str, str | None] = {
        "date": "2024-01-02",
        "open": "1",
        "high": "2",
        "low": "0.5",
        "close": "1.5",
    }
    rows: list[dict[str, str | None]] = [
        {**good, "volume": "10"},
        {**good, "volume": "-1"},
        {**good, "volume": "10", "high": "0.4"},
        {**good, "volume": "10", "open": "0"},
        {**good, "volume": "10", "close": None},
        {k: v for k, v in good.items() if k != "low"} | {"volume": "1"},
        {**good, "volume": "10", "date": "2024-13-01"},
    ]
    parsed, counts = validate_rows(rows, price_values)
    assert [p.date for p in parsed] == [date(2024, 1, 2)]
    assert dict(counts) == {
        "negative_volume": 1,
        "high_below_low": 1,
        "non_positive_price": 1,
        "null_value": 1,
        "missing_column": 1,
        "bad_date": 1,
    }
    assert counts.rejected == 6
    assert counts.describe().startswith("6 rejected (")


async def test_symbol_paging_survives_row_limit(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.row_limit = 70
    symbols = [s.ticker async for s in iter_symbols(dolthub_client, STOCKS_DB, page_size=500)]
    table = fake_dolthub.data.symbols()
    assert len(symbols) == len(table) - len(TEST_ISSUES)
    assert len(set(symbols)) == len(symbols)


async def test_persistent_outage_surfaces_one_plain_error(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    """Concurrent year windows fail as one DoltHubUnavailable, not an ExceptionGroup."""
    fake_dolthub.fail_next(1000, status=503)
    client = dolthub_client_factory(max_retries=1)
    with pytest.raises(DoltHubUnavailable) as caught:
        await fetch_price_bars(client, STOCKS_DB, "AAPL", START, END)
    assert caught.value.transient is True
    sent = len(fake_dolthub.requests)
    assert sent <= 2 * 4 + 4  # the other windows were cancelled, not retried to exhaustion


async def test_dividends_are_exact_decimals_in_one_bounded_query(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.data.extra_dividends = {
        "KO": [
            DividendEvent(date(2020, 7, 1), "0.00000"),  # not a payment
            DividendEvent(date(2020, 7, 2), "12abc"),
        ]
    }
    result = await fetch_dividends(dolthub_client, STOCKS_DB, "ko", date(2019, 1, 1), END)
    expected = [
        Dividend(date.fromisoformat(r["ex_date"] or ""), float(Decimal(r["amount"] or "")))
        for r in fake_dolthub.data.dividend_rows("KO")
        if "2019-01-01" <= (r["ex_date"] or "") and r["amount"] not in ("0.00000", "12abc")
    ]
    assert result.rows == expected and len(expected) > 20
    assert result.rejected == {"non_positive_amount": 1, "bad_number": 1}
    (sql,) = [r.sql or "" for r in fake_dolthub.requests]
    assert "FROM `dividend`" in sql and "`act_symbol` = 'KO'" in sql
    assert "`ex_date` >= '2019-01-01'" in sql and "`ex_date` < '2026-11-28'" in sql
    none = await fetch_dividends(dolthub_client, STOCKS_DB, "AAPL", date(2019, 1, 1), END)
    assert none.rows == [] and not none.rejected
