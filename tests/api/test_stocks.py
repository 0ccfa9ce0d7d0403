"""searchStocks, stock, popularStocks, Stock.prices window, ticker rules, health: public."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from services.entities import SEARCH_SHORT_SQL, SEARCH_SQL
from tests.fixtures.api import ApiData, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

SEARCH = "query($q: String!, $n: Int) { searchStocks(query: $q, limit: $n) { ticker name } }"
STOCK = """query($t: String!) { stock(ticker: $t) {
    ticker name sector exchange dataStatus hasPriceData hasFundamentalData
    priceDataMinDate priceDataMaxDate watcherCount
    backfill { status priority requestedAt retryCount errorMessage completedAt }
    signal { asOf close sma200 trendPosition valuationMetric valuationMultiple
             valuationPercentile valuationRegime epsTtm fundamentalDirection } } }"""


async def _watchers(api_data: ApiData, entity: uuid.UUID, count: int) -> None:
    for _ in range(count):
        await api_data.watch(await api_data.user(), entity)


def _tickers(body: dict) -> list[str]:
    assert "errors" not in body, body
    return [s["ticker"] for s in body["data"]["searchStocks"]]


async def test_search_ranks_exact_then_prefix_then_name_then_popularity(
    gql: GraphQLClient, api_data: ApiData
) -> None:
    await api_data.entity("AAP", "Zulu Parts")
    await _watchers(api_data, await api_data.entity("AAPL", "Yankee Devices"), 2)
    await api_data.entity("AAPX", "Xray Labs")
    await _watchers(api_data, await api_data.entity("AAPY", "Whiskey Co"), 5)
    await api_data.entity("QQQ", "Aap Holdings")
    await _watchers(api_data, await api_data.entity("RRR", "Aap Holdings"), 1)
    await _watchers(api_data, await api_data.entity("MSFT", "Microsoft"), 9)

    ranked = _tickers(await gql(SEARCH, {"q": " aap "}))
    assert ranked == ["AAP", "AAPY", "AAPL", "AAPX", "RRR", "QQQ"]
    assert _tickers(await gql(SEARCH, {"q": "aap", "n": 2})) == ["AAP", "AAPY"]
    assert _tickers(await gql(SEARCH, {"q": "holdings"})) == ["RRR", "QQQ"]
    assert _tickers(await gql(SEARCH, {"q": "micro"})) == ["MSFT"]
    assert _tickers(await gql(SEARCH, {"q": "ms"})) == ["MSFT"]  # short: ticker prefix


async def test_search_edge_inputs(gql: GraphQLClient, api_data: ApiData) -> None:
    await api_data.entity("ABC", "Alpha Beta")
    await api_data.entity("ABD", "Alpha Delta")
    assert _tickers(await gql(SEARCH, {"q": "   "})) == []
    assert _tickers(await gql(SEARCH, {"q": "A%"})) == []  # LIKE wildcards are literal
    assert _tickers(await gql(SEARCH, {"q": "_B"})) == []
    assert _tickers(await gql(SEARCH, {"q": "x' OR 1=1 --"})) == []
    for variables in ({"q": "a", "n": 0}, {"q": "a", "n": 51}, {"q": "a" * 101}):
        body = await gql(SEARCH, variables)
        assert error_codes(body) == ["BAD_USER_INPUT"], variables
    assert len(_tickers(await gql(SEARCH, {"q": "ab", "n": 50}))) == 2


async def test_search_uses_indexes_on_thousands_of_entities(
    pool: asyncpg.Pool, api_data: ApiData
) -> None:
    words = ["Alpha", "Bravo", "Delta", "Echo", "Golf", "Hotel", "Lima", "Oscar", "Tango"]
    await api_data.entities(
        [
            (f"{chr(65 + n % 26)}{chr(65 + n // 26 % 26)}{n:04d}"[:10], f"{words[n % 9]} {n} Inc")
            for n in range(4000)
        ]
    )
    await pool.execute("ANALYZE entities")
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        long_plan = await conn.fetch("EXPLAIN " + SEARCH_SQL, "ECHO", "ECHO%", "echo", 10, "%echo%")
        short_plan = await conn.fetch("EXPLAIN " + SEARCH_SHORT_SQL, "EC", "EC%", "ec", 10)
    for plan_rows in (long_plan, short_plan):
        plan = "\n".join(r[0] for r in plan_rows)
        assert "Seq Scan on entities" not in plan, plan
        assert "entities_name_trgm" in plan, plan
    long_text = "\n".join(r[0] for r in long_plan)
    assert "entities_ticker" in long_text, long_text


async def test_stock_by_ticker_with_backfill_signal_and_watchers(
    gql: GraphQLClient, api_data: ApiData
) -> None:
    entity = await api_data.entity(
        "BRK.B",
        "Berkshire Hathaway",
        has_price_data=True,
        price_range=(dt.date(2015, 1, 2), dt.date(2025, 1, 31)),
    )
    await _watchers(api_data, entity, 3)
    await api_data.job("BRK.B", "completed")
    await api_data.signal(
        entity, dt.date(2025, 1, 30), valuation_metric=None, valuation_regime="UNKNOWN"
    )
    await api_data.signal(entity, dt.date(2025, 1, 31), eps_ttm=21.5)

    body = await gql(STOCK, {"t": "brk.b"})

    assert "errors" not in body, body
    stock = body["data"]["stock"]
    assert stock["ticker"] == "BRK.B" and stock["name"] == "Berkshire Hathaway"
    assert (stock["dataStatus"], stock["hasPriceData"], stock["hasFundamentalData"]) == (
        "READY",
        True,
        False,
    )
    assert (stock["priceDataMinDate"], stock["priceDataMaxDate"]) == ("2015-01-02", "2025-01-31")
    assert stock["watcherCount"] == 3
    assert stock["backfill"]["status"] == "COMPLETED" and stock["backfill"]["priority"] == 1
    assert stock["signal"] == {
        "asOf": "2025-01-31",
        "close": 100.0,
        "sma200": 90.0,
        "trendPosition": "ABOVE_200DMA",
        "valuationMetric": "EV/EBITDA",
        "valuationMultiple": 12.5,
        "valuationPercentile": 15.0,
        "valuationRegime": "CHEAP",
        "epsTtm": 21.5,
        "fundamentalDirection": "IMPROVING",
    }


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("brk.b", "BRK.B"),
        (" aapl ", "AAPL"),
        ("DYN$A", "DYN$A"),
        ("bf-b", "BF-B"),
        ("a^b", "A^B"),
        ("0123456789", "0123456789"),
    ],
)
async def test_well_formed_tickers_are_normalized(
    raw: str, normalized: str, gql: GraphQLClient, api_data: ApiData
) -> None:
    await api_data.entity(normalized)
    body = await gql(STOCK, {"t": raw})
    assert body["data"]["stock"]["ticker"] == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ABCDEFGHIJK",
        "A;DROP",
        "'",
        "ÄPPL",
        "ＡＡＰＬ",
        "-ABC",
        "A B",
        "ıBM",
        "AA\tPL",
        "^GSPC",
    ],
)
async def test_malformed_tickers_are_bad_user_input_everywhere(
    raw: str,
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
) -> None:
    viewer = new_viewer()
    public = await gql(STOCK, {"t": raw})
    assert error_codes(public) == ["BAD_USER_INPUT"]
    assert "invalid ticker" in public["errors"][0]["message"]
    for mutation in (
        "mutation($t: String!) { addStock(ticker: $t) { addedAt } }",
        "mutation($t: String!) { removeStock(ticker: $t) }",
        "mutation($t: String!) { setStockAlerts(ticker: $t, enabled: true) { addedAt } }",
        "mutation($t: String!) { completeOnboarding(investingStyle: VALUE, tickers: [$t]) { id } }",
    ):
        body = await gql(mutation, {"t": raw}, token=viewer.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (mutation, body)
    assert await pool.fetchval("SELECT count(*) FROM entities") == 0
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 0


async def test_unknown_ticker_is_null(gql: GraphQLClient) -> None:
    body = await gql(STOCK, {"t": "NOSUCH"})
    assert body["data"] == {"stock": None} and "errors" not in body


async def test_popular_stocks_by_watchers_then_ticker(
    gql: GraphQLClient, api_data: ApiData
) -> None:
    await _watchers(api_data, await api_data.entity("ZZZ"), 2)
    await _watchers(api_data, await api_data.entity("AAA"), 2)
    await _watchers(api_data, await api_data.entity("MMM"), 4)
    await api_data.entity("NOBODY")
    query = "query($n: Int) { popularStocks(limit: $n) { ticker watcherCount } }"
    body = await gql(query, {})
    assert body["data"]["popularStocks"] == [
        {"ticker": "MMM", "watcherCount": 4},
        {"ticker": "AAA", "watcherCount": 2},
        {"ticker": "ZZZ", "watcherCount": 2},
    ]
    assert [s["ticker"] for s in (await gql(query, {"n": 1}))["data"]["popularStocks"]] == ["MMM"]
    for limit in (0, 51):
        assert error_codes(await gql(query, {"n": limit})) == ["BAD_USER_INPUT"]


async def test_prices_window_is_validated(gql: GraphQLClient, api_data: ApiData) -> None:
    await api_data.entity("AAPL", has_price_data=True)
    await api_data.entity("NODATA")
    query = """query($t: String!, $from: Date, $to: Date) {
        stock(ticker: $t) { prices(from: $from, to: $to) { date close sma200 } } }"""
    ok = await gql(query, {"t": "NODATA", "from": "2015-01-01", "to": "2025-01-01"})
    assert ok["data"] == {"stock": {"prices": []}} and "errors" not in ok
    assert "errors" not in await gql(query, {"t": "AAPL"})
    for variables in (
        {"from": "2025-02-01", "to": "2025-01-01"},
        {"from": "2014-12-31", "to": "2025-01-01"},
        {"from": "2025-13-01"},
        {"to": "yesterday"},
    ):
        body = await gql(query, {"t": "AAPL", **variables})
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)


async def test_health_reports_database_queue_and_last_evaluation(
    gql: GraphQLClient, api_data: ApiData
) -> None:
    entity = await api_data.entity("AAPL")
    await api_data.job("AAPL", "pending")
    await api_data.job("MSFT", "pending")
    await api_data.job("TSLA", "failed")
    await api_data.signal(entity, dt.date(2025, 3, 4))
    await api_data.signal(entity, dt.date(2025, 3, 5))
    body = await gql(
        "{ health { ok database objectStore version pendingBackfills lastEvaluationAsOf } }"
    )
    health = body["data"]["health"]
    assert health["database"] is True and health["version"]
    assert (health["pendingBackfills"], health["lastEvaluationAsOf"]) == (2, "2025-03-05")
