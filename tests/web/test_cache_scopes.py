"""Per-scope response caching: an answer is invalidated only by changes to what it showed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.api import ApiData, Viewer
from tests.fixtures.ws import ServerProcess
from tests.web.test_response_cache import metric

WATCHLIST = (
    "{ watchlist { count items { stock { ticker signal { close } backfill { status } } "
    "alertsEnabled } } }"
)
WATCHLIST_WITH_COUNTS = "{ watchlist { items { stock { ticker watcherCount } } } }"
HIT = "material-changes; hit"
MISS = "material-changes; fwd=miss"


class Client:
    """GraphQL over HTTP that returns the data and the Cache-Status header."""

    def __init__(self, http: httpx.AsyncClient, url: str = "/graphql") -> None:
        self.http = http
        self.url = url

    async def ask(self, query: str, token: str | None = None) -> tuple[dict[str, Any], str]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(self.url, json={"query": query}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"], response.headers["cache-status"]

    async def warm(self, query: str, token: str | None = None) -> dict[str, Any]:
        """Ask until the answer is a hit (the first ask stores it)."""
        data, _ = await self.ask(query, token)
        again, status = await self.ask(query, token)
        assert (again, status) == (data, HIT)
        return data

    async def mutate(self, mutation: str, token: str) -> None:
        await self.ask(mutation, token)


async def watching(api_data: ApiData, viewer: Viewer, *tickers: str) -> dict[str, Any]:
    """The viewer's user row watching these (new) entities; entity ids by ticker."""
    await api_data.user(viewer.id)
    ids = {}
    for ticker in tickers:
        ids[ticker] = await api_data.entity(ticker, f"{ticker} Inc", has_price_data=True)
        await api_data.watch(viewer.id, ids[ticker])
    return ids


async def test_other_users_writes_and_other_stocks_leave_an_answer_cached(
    client: httpx.AsyncClient,
    api_data: ApiData,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
) -> None:
    ann, bob = new_viewer(), new_viewer()
    ids = await watching(api_data, ann, "AAPL")
    msft = await api_data.entity("MSFT", "Microsoft", has_price_data=True)
    api = Client(client)
    await api.warm(WATCHLIST, ann.token)

    # Another user's mutations, including on the very stock Ann shows.
    await api.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', bob.token)
    await api.mutate('mutation { addStock(ticker: "AAPL") { addedAt } }', bob.token)
    await api.mutate('mutation { removeStock(ticker: "MSFT") }', bob.token)
    await api.mutate("mutation { updateSettings(input: {alertsEnabled: false}) { id } }", bob.token)
    await api.mutate('mutation { addStock(ticker: "NEWCO") { addedAt } }', bob.token)
    # An evaluation and a backfill of a stock Ann does not show.
    await api_data.signal(msft, dt.date(2024, 7, 1))
    job = await api_data.job("MSFT", "pending")
    await pool.execute("UPDATE backfill_queue SET status = 'completed' WHERE id = $1", job)
    _, status = await api.ask(WATCHLIST, ann.token)
    assert status == HIT

    # An evaluation of a stock she shows: read at once.
    await api_data.signal(ids["AAPL"], dt.date(2024, 7, 1), close=123.0)
    data, status = await api.ask(WATCHLIST, ann.token)
    assert status == MISS
    assert data["watchlist"]["items"][0]["stock"]["signal"] == {"close": 123.0}

    # A backfill status change of her stock.
    await api.warm(WATCHLIST, ann.token)
    job = await api_data.job("AAPL", "pending")
    data, status = await api.ask(WATCHLIST, ann.token)
    assert (status, data["watchlist"]["items"][0]["stock"]["backfill"]) == (
        MISS,
        {"status": "PENDING"},
    )
    await api.warm(WATCHLIST, ann.token)
    await pool.execute("UPDATE backfill_queue SET locked_by = 'w' WHERE id = $1", job)  # lease
    assert (await api.ask(WATCHLIST, ann.token))[1] == HIT
    await pool.execute("UPDATE backfill_queue SET status = 'processing' WHERE id = $1", job)
    data, status = await api.ask(WATCHLIST, ann.token)
    assert (status, data["watchlist"]["items"][0]["stock"]["backfill"]) == (
        MISS,
        {"status": "PROCESSING"},
    )

    # Her own writes.
    await api.warm(WATCHLIST, ann.token)
    await api.mutate(
        'mutation { setStockAlerts(ticker: "AAPL", enabled: false) { addedAt } }', ann.token
    )
    data, status = await api.ask(WATCHLIST, ann.token)
    assert (status, data["watchlist"]["items"][0]["alertsEnabled"]) == (MISS, False)
    await api.warm(WATCHLIST, ann.token)
    await api.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', ann.token)
    data, status = await api.ask(WATCHLIST, ann.token)
    assert (status, data["watchlist"]["count"]) == (MISS, 2)


async def test_watcher_counts_invalidate_only_answers_that_show_them(
    client: httpx.AsyncClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    ann, bob = new_viewer(), new_viewer()
    await watching(api_data, ann, "AAPL")
    await api_data.entity("MSFT")
    api = Client(client)
    await api.warm(WATCHLIST, ann.token)
    await api.warm(WATCHLIST_WITH_COUNTS, ann.token)

    await api.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', bob.token)
    assert (await api.ask(WATCHLIST_WITH_COUNTS, ann.token))[1] == HIT

    await api.mutate('mutation { addStock(ticker: "AAPL") { addedAt } }', bob.token)
    assert (await api.ask(WATCHLIST, ann.token))[1] == HIT
    data, status = await api.ask(WATCHLIST_WITH_COUNTS, ann.token)
    assert (status, data["watchlist"]["items"][0]["stock"]["watcherCount"]) == (MISS, 2)


async def test_a_watcher_count_selected_through_a_fragment_is_invalidated_by_its_stock_only(
    client: httpx.AsyncClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    # The field declares @cacheScope(scope: WATCHER_COUNTS); the cache finds it in fragments.
    ann, bob = new_viewer(), new_viewer()
    await watching(api_data, ann, "AAPL")
    await api_data.entity("MSFT")
    query = (
        '{ stock(ticker: "AAPL") { ...Counted } } '
        "fragment Counted on Stock { ticker ... on Stock { watcherCount } }"
    )
    api = Client(client)
    assert (await api.warm(query))["stock"]["watcherCount"] == 1

    await api.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', bob.token)
    assert (await api.ask(query))[1] == HIT

    await api.mutate('mutation { addStock(ticker: "AAPL") { addedAt } }', bob.token)
    assert await api.ask(query) == ({"stock": {"ticker": "AAPL", "watcherCount": 2}}, MISS)


async def test_public_lists_follow_their_own_scopes(
    client: httpx.AsyncClient,
    api_data: ApiData,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
) -> None:
    bob = new_viewer()
    aapl = await api_data.entity("AAPL", "Apple")
    msft = await api_data.entity("MSFT", "Microsoft")
    api = Client(client)
    stock = '{ stock(ticker: "AAPL") { name signal { close } } }'
    search = '{ searchStocks(query: "ZEB") { ticker } }'
    popular = "{ popularStocks { ticker watcherCount } }"
    missing = '{ stock(ticker: "ZEBRA") { name } }'
    for query in (stock, search, popular, missing):
        await api.warm(query)

    await api_data.signal(msft, dt.date(2024, 7, 1))  # another stock's evaluation
    await api.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', bob.token)
    assert (await api.ask(stock))[1] == HIT
    data, status = await api.ask(popular)  # everyone's watch counts
    assert (status, data) == (MISS, {"popularStocks": [{"ticker": "MSFT", "watcherCount": 1}]})

    await pool.execute("UPDATE entities SET name = 'Apple Inc' WHERE id = $1", aapl)
    assert await api.ask(stock) == ({"stock": {"name": "Apple Inc", "signal": None}}, MISS)
    assert (await api.ask(missing))[1] == MISS  # names and tickers: the `stocks` scope

    await api.warm(search)
    await api.warm(missing)
    await api_data.entity("ZEBRA", "Zebra")
    assert await api.ask(search) == ({"searchStocks": [{"ticker": "ZEBRA"}]}, MISS)
    assert await api.ask(missing) == ({"stock": {"name": "Zebra"}}, MISS)


async def test_cache_status_says_hit_miss_bypass_or_method(
    client: httpx.AsyncClient, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()

    async def status(query: str, token: str | None = None) -> str:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await client.post("/graphql", json={"query": query}, headers=headers)
        return response.headers["cache-status"]

    assert await status("{ popularStocks { ticker } }") == MISS
    assert await status("{ popularStocks { ticker } }") == HIT
    assert await status("{ me { id } }", viewer.token) == MISS
    assert await status("{ me { id } }", viewer.token) == HIT
    bypass = "material-changes; fwd=bypass"
    assert await status("{ health { ok } }") == bypass  # never cached
    assert await status("{ me { id } }") == bypass  # no token: nothing to key it by
    mutation = 'mutation { addStock(ticker: "AAPL") { addedAt } }'
    assert await status(mutation, viewer.token) == "material-changes; fwd=method"
    # A 304 says it too.
    first = await client.get("/graphql", params={"query": "{ popularStocks { ticker } }"})
    again = await client.get(
        "/graphql",
        params={"query": "{ popularStocks { ticker } }"},
        headers={"if-none-match": first.headers["etag"]},
    )
    assert again.status_code == 304 and again.headers["cache-status"] == HIT


async def test_concurrent_misses_of_one_answer_execute_once(
    client: httpx.AsyncClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    ann = new_viewer()
    await watching(api_data, ann, "AAPL", "MSFT")
    api = Client(client)
    # Her row ensured first: concurrent first requests would each upsert it, and each such
    # commit rightly invalidates an answer being executed.
    await api.ask("{ me { id } }", ann.token)
    before = await metric(client)
    answers = await asyncio.gather(*(api.ask(WATCHLIST, ann.token) for _ in range(8)))
    after = await metric(client)
    assert {data["watchlist"]["count"] for data, _ in answers} == {2}
    assert after.get("miss", 0) - before.get("miss", 0) == 1  # one execution
    assert after.get("hit", 0) - before.get("hit", 0) == 7
    assert sorted(status for _, status in answers) == [MISS] + [HIT] * 7


async def test_concurrent_misses_with_errors_are_not_shared(
    client: httpx.AsyncClient, gql: Any
) -> None:
    query = '{ searchStocks(query: "a", limit: 500) { ticker } }'
    before = await metric(client)
    bodies = await asyncio.gather(*(gql(query) for _ in range(4)))
    after = await metric(client)
    assert all(b["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" for b in bodies)
    # The first executed alone; the others waited, saw nothing stored and executed themselves.
    assert after.get("miss", 0) - before.get("miss", 0) == 4
    assert after.get("hit", 0) == before.get("hit", 0)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_across_processes_only_what_an_answer_showed_invalidates_it(
    start_server: Callable[..., ServerProcess],
    api_data: ApiData,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
) -> None:
    ann, bob = new_viewer(), new_viewer()
    ids = await watching(api_data, ann, "AAPL")
    await api_data.entity("MSFT", has_price_data=True)
    reader_server, writer_server = start_server(), start_server()
    async with httpx.AsyncClient(timeout=10) as http:
        reader = Client(http, f"http://127.0.0.1:{reader_server.port}/graphql")
        writer = Client(http, f"http://127.0.0.1:{writer_server.port}/graphql")
        await reader.warm(WATCHLIST, ann.token)
        for mutation in (
            'mutation { addStock(ticker: "MSFT") { addedAt } }',
            'mutation { addStock(ticker: "AAPL") { addedAt } }',
            'mutation { removeStock(ticker: "AAPL") }',
            "mutation { updateSettings(input: {alertsEnabled: false}) { id } }",
        ):
            await writer.mutate(mutation, bob.token)
            assert (await reader.ask(WATCHLIST, ann.token))[1] == HIT, mutation

        await api_data.signal(ids["AAPL"], dt.date(2024, 7, 1), close=321.0)
        data, status = await reader.ask(WATCHLIST, ann.token)
        assert status == MISS
        assert data["watchlist"]["items"][0]["stock"]["signal"] == {"close": 321.0}

        await reader.warm(WATCHLIST, ann.token)
        await pool.execute("INSERT INTO backfill_queue (ticker) VALUES ('AAPL')")
        data, status = await reader.ask(WATCHLIST, ann.token)
        assert (status, data["watchlist"]["items"][0]["stock"]["backfill"]) == (
            MISS,
            {"status": "PENDING"},
        )

        await reader.warm(WATCHLIST, ann.token)
        await writer.mutate('mutation { addStock(ticker: "MSFT") { addedAt } }', ann.token)
        data, status = await reader.ask(WATCHLIST, ann.token)
        assert (status, data["watchlist"]["count"]) == (MISS, 2)


async def test_a_cancelled_first_request_does_not_fail_those_waiting_for_it(
    client: httpx.AsyncClient,
    api_data: ApiData,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
) -> None:
    ann = new_viewer()
    await watching(api_data, ann, "AAPL")
    api = Client(client)
    await api.ask("{ me { id } }", ann.token)  # her row exists: the watchlist only reads
    async with pool.acquire() as conn:
        blocking = conn.transaction()
        await blocking.start()
        # The watchlist statement waits for this lock: the first request is mid-execution.
        await conn.execute("LOCK TABLE entity_watch_counts IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(api.ask(WATCHLIST, ann.token))
        await _until_waiting_on_a_lock(pool)
        others = [asyncio.create_task(api.ask(WATCHLIST, ann.token)) for _ in range(3)]
        await asyncio.sleep(0.2)  # they find the first one's flight and wait for it
        first.cancel()
        await blocking.rollback()
    answers = await asyncio.wait_for(asyncio.gather(*others), 10)
    assert {data["watchlist"]["count"] for data, _ in answers} == {1}
    assert await collapsed(client) >= 3
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await api.ask(WATCHLIST, ann.token))[1] == HIT


async def collapsed(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mc_response_cache_collapsed_total"
    )


async def _until_waiting_on_a_lock(pool: asyncpg.Pool) -> None:
    for _ in range(200):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the first request never waited for the lock")
