"""The response cache: hits while nothing changed, never stale after a write, on any process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from graphql import build_schema
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from ingest.evaluation.run import run_evaluation
from services.data_coverage import DataWritten, record_written
from services.delivery import outbox
from services.settings import Settings
from services.storage.local import LocalObjectStore
from services.symbols import SymbolInfo, upsert_symbols
from tests.fixtures.api import ApiData, StatementLog, Viewer
from tests.fixtures.app import GraphQLClient
from tests.fixtures.delivery import DeliveryWorld
from tests.fixtures.evaluation import D0, D1, watched_scenario
from tests.fixtures.ws import ServerProcess
from web.app import create_app
from web.operation_guards import MAX_QUERY_BYTES, MAX_TOKENS
from web.response_cache import CachedAnswer, ResponseCache
from web.schema_export import schema as app_schema

# The app's schema as the response cache reads it (its SDL, with the @cacheScope markers).
APP_SCHEMA = build_schema(app_schema.as_str())
POPULAR = "{ popularStocks { ticker watcherCount } }"
WATCHLIST = "{ watchlist { count items { stock { ticker } alertsEnabled trendState } } }"


def cache_counts(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mc_response_cache_total":
                counts[sample.labels["result"]] = sample.value
    return counts


async def metric(client: httpx.AsyncClient) -> dict[str, float]:
    return cache_counts((await client.get("/metrics")).text)


async def cached_bytes(client: httpx.AsyncClient) -> float:
    """The mc_response_cache_bytes gauge as a scrape sees it."""
    text = (await client.get("/metrics")).text
    [value] = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mc_response_cache_bytes"
    ]
    return value


# --- the plan: what may be cached, and how ---------------------------------------------------


@pytest.mark.parametrize(
    ("query", "operation", "plan"),
    [
        (POPULAR, None, "public"),
        (
            '{ stock(ticker: "A") { ticker } s: searchStocks(query: "a") { ticker } }',
            None,
            "public",
        ),
        ("{ ...F } fragment F on Query { popularStocks { ticker } }", None, "public"),
        ('{ ... on Query { stock(ticker: "A") { ticker } } }', None, "public"),
        (WATCHLIST, None, "private"),
        ("{ me { id } popularStocks { ticker } }", None, "private"),
        ("query A { me { id } } query B { popularStocks { ticker } }", "B", "public"),
        ("query A { me { id } } query B { popularStocks { ticker } }", None, None),
        ("{ health { ok } }", None, None),
        ("{ recentAlertsCount }", None, None),
        ("{ me { id } health { ok } }", None, None),
        ("{ popularStocks { ticker myAlerts { id } } }", None, "private"),
        (
            "{ ...F } fragment F on Query { popularStocks { ...G } } "
            "fragment G on Stock { myAlerts { id } }",
            None,
            "private",
        ),
        ('{ stock(ticker: "A") { ... on Stock { myAlerts { id } } } }', None, "private"),
        ("{ ...F } fragment F on Query { ...F popularStocks { ticker } }", None, "public"),
        ("{ __schema { types { name } } }", None, None),
        ("{ popularStocks { nope } }", None, None),
        ('mutation { addStock(ticker: "A") { addedAt } }', None, None),
        ("subscription { alertCreated { id } }", None, None),
        ("{ popularStocks { ticker ", None, None),
        ("{ ...Missing }", None, None),
    ],
)
def test_cache_plan_follows_the_fields_cache_scope(
    query: str, operation: str | None, plan: str | None
) -> None:
    found = ResponseCache(2**20, APP_SCHEMA).plan(query, operation)
    assert (None if found is None else "public" if found.public else "private") == plan


def test_documents_the_guards_refuse_are_not_cacheable_and_not_lexed_in_full() -> None:
    cache = ResponseCache(2**20, APP_SCHEMA)
    too_long = "{ popularStocks { ticker } }" + " " * MAX_QUERY_BYTES
    too_many_tokens = "{ popularStocks { " + "ticker " * MAX_TOKENS + "} }"
    assert cache.plan(too_long, None) is None
    assert cache.plan(too_many_tokens, None) is None
    assert (too_long, None) not in cache._plans  # not kept as a key either
    assert cache.plan(POPULAR, None) is not None


def test_entries_are_bounded_by_bytes_and_checked_against_versions() -> None:
    cache = ResponseCache(4_000, APP_SCHEMA)
    scopes = ("public", "stock:a")
    for i in range(20):
        cache.put(("public", str(i)), scopes, (1, 1), {"x": "y" * 500})
    assert cache.bytes <= 4_000 and 0 < len(cache) < 20
    assert cache.get(("public", "0"), scopes, (1, 1)) is None  # the oldest left first
    assert cache.scopes(("public", "19")) == scopes
    assert cache.get(("public", "19"), scopes, (1, 1)) == CachedAnswer(
        orjson.dumps({"x": "y" * 500})
    )
    # The same versions of other scopes: a miss, not a hit by coincidence.
    assert cache.get(("public", "19"), ("public", "stock:b"), (1, 1)) is None
    assert cache.get(("public", "19"), scopes, (1, 2)) is None  # another version: dropped
    assert cache.get(("public", "19"), scopes, (1, 1)) is None
    cache.put(("public", "big"), scopes, (1, 1), {"x": "y" * 10_000})  # larger than the cache
    assert cache.get(("public", "big"), scopes, (1, 1)) is None


# --- in one process --------------------------------------------------------------------------


async def test_public_answers_are_shared_and_a_write_invalidates_them(
    client: httpx.AsyncClient,
    gql: GraphQLClient,
    api_data: ApiData,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
    statement_log: StatementLog,
) -> None:
    before = await metric(client)
    assert (await gql(POPULAR))["data"] == {"popularStocks": []}
    statement_log.queries.clear()
    viewer = new_viewer()
    assert (await gql(POPULAR, token=viewer.token))["data"] == {"popularStocks": []}
    after = await metric(client)
    assert after.get("hit", 0) - before.get("hit", 0) == 1  # another user, the same answer
    assert await cached_bytes(client) > 0  # the stored answer, as of the scrape
    # A hit costs one statement: reading the version counters.
    assert len(statement_log.queries) == 1 and "cache_versions" in statement_log.queries[0]

    user = await api_data.user()
    entity = await api_data.entity("AAPL")
    await pool.execute("INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", user, entity)
    body = await gql(POPULAR)
    assert body["data"] == {"popularStocks": [{"ticker": "AAPL", "watcherCount": 1}]}


async def test_a_hits_version_read_releases_its_connection_without_a_reset_round_trip(
    app: Starlette, gql: GraphQLClient, pool: asyncpg.Pool
) -> None:
    graphql = app.state.graphql
    for _ in range(2):  # a miss, then a hit
        assert "errors" not in await gql(POPULAR)
    last_statement = "SELECT query FROM pg_stat_activity WHERE pid = $1"
    async with graphql.version_pool.acquire() as conn:
        reader = conn.get_server_pid()
    # What that connection last ran is the hit's version read: nothing was sent on release.
    assert "cache_versions" in await pool.fetchval(last_statement, reader)


async def test_private_answers_are_per_user_and_follow_their_mutations(
    client: httpx.AsyncClient, gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    ann, bob = new_viewer(), new_viewer()
    await gql('mutation { addStock(ticker: "AAPL") { addedAt } }', token=ann.token)
    first = await gql(WATCHLIST, token=ann.token)
    assert first["data"]["watchlist"]["count"] == 1
    assert (await gql(WATCHLIST, token=ann.token)) == first  # served from the cache
    assert (await gql(WATCHLIST, token=bob.token))["data"]["watchlist"]["count"] == 0

    await gql(
        'mutation { setStockAlerts(ticker: "AAPL", enabled: false) { addedAt } }', token=ann.token
    )
    item = (await gql(WATCHLIST, token=ann.token))["data"]["watchlist"]["items"][0]
    assert item["alertsEnabled"] is False
    await gql('mutation { removeStock(ticker: "AAPL") }', token=ann.token)
    assert (await gql(WATCHLIST, token=ann.token))["data"]["watchlist"]["count"] == 0
    # Without a token nothing is cached or served: the usual error.
    before = await metric(client)
    body = await gql(WATCHLIST)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await metric(client)).get("uncached", 0) - before.get("uncached", 0) == 1


async def test_answers_with_errors_are_not_stored(
    client: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    query = '{ searchStocks(query: "a", limit: 500) { ticker } }'
    before = await metric(client)
    for _ in range(2):
        body = await gql(query)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    after = await metric(client)
    assert after.get("hit", 0) == before.get("hit", 0)
    assert after.get("miss", 0) - before.get("miss", 0) == 2


@pytest.fixture
async def uncached_client(
    settings: Settings, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    application: Starlette = create_app(
        dataclasses.replace(settings, response_cache_mb=0), database_url=database_url
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_response_cache_mb_0_turns_it_off(uncached_client: httpx.AsyncClient) -> None:
    before = await metric(uncached_client)
    for _ in range(3):
        response = await uncached_client.post("/graphql", json={"query": POPULAR})
        assert response.json()["data"] == {"popularStocks": []}
    after = await metric(uncached_client)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("hit", "miss")} == {
        "hit": 0,
        "miss": 0,
    }


# --- across processes: read-after-write ------------------------------------------------------


class Remote:
    """GraphQL against one server process."""

    def __init__(self, server: ServerProcess, http: httpx.AsyncClient) -> None:
        self.url = f"http://127.0.0.1:{server.port}/graphql"
        self.http = http

    async def __call__(self, query: str, token: str | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(self.url, json={"query": query}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def warm(self, query: str, token: str | None = None) -> dict[str, Any]:
        """Ask twice, so the answer is certainly cached on this process."""
        first = await self(query, token)
        assert await self(query, token) == first
        return first


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_every_mutation_is_read_back_at_once_on_another_process(
    start_server: Callable[..., ServerProcess], new_viewer: Callable[..., Viewer]
) -> None:
    writer_server, reader_server = start_server(), start_server()
    viewer = new_viewer(email="ann@example.com")
    async with httpx.AsyncClient(timeout=10) as http:
        writer, reader = Remote(writer_server, http), Remote(reader_server, http)
        t = viewer.token
        steps: list[tuple[str, str, Callable[[dict[str, Any]], bool]]] = [
            (
                'mutation { completeOnboarding(investingStyle: VALUE, tickers: ["AAPL"]) { id } }',
                "{ me { investingStyle } watchlist { count } }",
                lambda d: d["me"]["investingStyle"] == "VALUE" and d["watchlist"]["count"] == 1,
            ),
            (
                'mutation { addStock(ticker: "MSFT") { addedAt } }',
                "{ watchlist { count } popularStocks { ticker } }",
                lambda d: d["watchlist"]["count"] == 2 and len(d["popularStocks"]) == 2,
            ),
            (
                'mutation { setStockAlerts(ticker: "MSFT", enabled: false) { addedAt } }',
                "{ watchlist { items { stock { ticker } alertsEnabled } } }",
                lambda d: (
                    {i["stock"]["ticker"]: i["alertsEnabled"] for i in d["watchlist"]["items"]}[
                        "MSFT"
                    ]
                    is False
                ),
            ),
            (
                'mutation { removeStock(ticker: "MSFT") }',
                '{ watchlist { count } stock(ticker: "MSFT") { watcherCount } }',
                lambda d: d["watchlist"]["count"] == 1 and d["stock"]["watcherCount"] == 0,
            ),
            (
                "mutation { updateSettings(input: {alertsEnabled: false, emailDigest: WEEKLY}) "
                "{ id } }",
                "{ me { alertsEnabled emailDigest } }",
                lambda d: d["me"] == {"alertsEnabled": False, "emailDigest": "WEEKLY"},
            ),
            (
                'mutation { createWebhook(url: "http://127.0.0.1:9/hook") { secret } }',
                "{ webhooks { url enabled } }",
                lambda d: d["webhooks"] == [{"url": "http://127.0.0.1:9/hook", "enabled": True}],
            ),
        ]
        for mutation, query, changed in steps:
            before = await reader.warm(query, t)
            assert not changed(before), (mutation, before)
            await writer(mutation, t)
            after = await reader(query, t)  # at once, on the other process
            assert changed(after), (mutation, after)

        hook = (await reader("{ webhooks { id } }", t))["webhooks"][0]["id"]
        for mutation, query, expected in [
            (
                f'mutation {{ setWebhookEnabled(id: "{hook}", enabled: false) {{ id }} }}',
                "{ webhooks { enabled } }",
                {"webhooks": [{"enabled": False}]},
            ),
            (
                f'mutation {{ deleteWebhook(id: "{hook}") }}',
                "{ webhooks { id } }",
                {"webhooks": []},
            ),
        ]:
            await reader.warm(query, t)
            await writer(mutation, t)
            assert await reader(query, t) == expected


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_each_ingest_write_path_is_read_back_at_once(
    start_server: Callable[..., ServerProcess],
    pool: asyncpg.Pool,
    database_url: str,
    eval_store: LocalObjectStore,
    eval_settings: Settings,
    make_token: Callable[..., str],
    world: DeliveryWorld,
) -> None:
    reader_server = start_server()
    _, user = await watched_scenario(pool, eval_store)
    token = make_token(sub=user)
    async with httpx.AsyncClient(timeout=10) as http:
        reader = Remote(reader_server, http)

        # evaluate: signals, states and alerts of one entity commit together.
        signal_query = "{ watchlist { items { trendState valuationRegime lastEvaluatedAt } } }"
        alerts_query = (
            "{ alerts { totalCount edges { node { id openedAt } } } alertStats { total } }"
        )
        await reader.warm(signal_query, token)
        await reader.warm(alerts_query, token)
        await run_evaluation(eval_settings, database_url, as_of=D0, store=eval_store)
        evaluated = await reader(signal_query, token)
        assert evaluated["watchlist"]["items"][0]["lastEvaluatedAt"] is not None
        await reader.warm(alerts_query, token)
        await run_evaluation(eval_settings, database_url, as_of=D1, store=eval_store)
        alerted = await reader(alerts_query, token)
        assert alerted["alerts"]["totalCount"] >= 1 and alerted["alertStats"]["total"] >= 1

        # markAlertOpened, through the API of another process.
        alert_id = alerted["alerts"]["edges"][0]["node"]["id"]
        await reader.warm(alerts_query, token)
        writer = Remote(start_server(), http)
        await writer(f'mutation {{ markAlertOpened(id: "{alert_id}") {{ id }} }}', token)
        opened = await reader(alerts_query, token)
        assert any(e["node"]["openedAt"] for e in opened["alerts"]["edges"])

        # backfill / update-prices / import-csv: the entity row after the objects.
        stock_query = '{ stock(ticker: "ACME") { priceDataMaxDate hasFundamentalData } }'
        before = await reader.warm(stock_query)
        async with pool.acquire() as conn, conn.transaction():
            await record_written(
                conn,
                DataWritten(ticker="ACME", price_min=date(2024, 7, 1), price_max=date(2024, 7, 31)),
            )
        assert (await reader(stock_query))["stock"]["priceDataMaxDate"] == "2024-07-31"
        assert before["stock"]["priceDataMaxDate"] != "2024-07-31"

        # backfill queue: a job appears for a stock.
        job_query = '{ stock(ticker: "ACME") { backfill { status } } }'
        await reader.warm(job_query)
        await pool.execute("INSERT INTO backfill_queue (ticker) VALUES ('ACME')")
        assert (await reader(job_query))["stock"]["backfill"] == {"status": "PENDING"}

        # sync-symbols: the search universe.
        search_query = '{ searchStocks(query: "ZEBRA") { ticker name } }'
        assert (await reader.warm(search_query))["searchStocks"] == []
        async with pool.acquire() as conn:
            await upsert_symbols(conn, [SymbolInfo("ZEBRA", "Zebra Technologies")])
        found = (await reader(search_query))["searchStocks"]
        assert found == [{"ticker": "ZEBRA", "name": "Zebra Technologies"}]

        # deliver: a delivery's outcome.
        deliveries_query = "{ deliveries { edges { node { status } } } }"
        await pool.execute("UPDATE users SET email = 'ann@example.com' WHERE id = $1", user)
        await world.alert(user, "ACME", as_of=date(2024, 7, 31))
        assert (await reader.warm(deliveries_query, token))["deliveries"]["edges"][0]["node"] == {
            "status": "PENDING"
        }
        (row,) = await pool.fetch("SELECT id FROM deliveries")
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE deliveries SET locked_by = 'w', locked_until = now() + interval '1 minute'"
            )
            await outbox.mark_delivered(conn, [row["id"]], "w", [None])
        delivered = await reader(deliveries_query, token)
        assert delivered["deliveries"]["edges"][0]["node"] == {"status": "DELIVERED"}
