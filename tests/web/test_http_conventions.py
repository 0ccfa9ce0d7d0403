"""GraphQL over HTTP: media types and status codes, GET and 405, ETag/304, persisted queries."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette
from strawberry.http import GraphQLRequestData

from tests.fixtures.api import ApiData, Viewer
from tests.fixtures.ws import insert_alerts, live_server
from web.http_conventions import (
    PersistedQueries,
    PersistedQueryError,
    entry_size,
    etag_matches,
    wants_graphql_response,
)

GRAPHQL_RESPONSE = "application/graphql-response+json"
POPULAR = "{ popularStocks { ticker watcherCount } }"
POPULAR_ANSWER = {"data": {"popularStocks": []}, "extensions": {"cost": 10}}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], accept: str | None = None, **headers: str
) -> httpx.Response:
    if accept is not None:
        headers["accept"] = accept
    return await client.post("/graphql", json=body, headers=headers)


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ("{ popularStocks { ticker ", None),  # does not parse
        ("{ popularStocks { nope } }", None),  # does not validate
        ("query($n: Int) { popularStocks(limit: $n) { ticker } }", {"n": "ten"}),  # coercion
    ],
)
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any] | None
) -> None:
    modern = await post(client, {"query": document, "variables": variables}, GRAPHQL_RESPONSE)
    assert modern.status_code == 400
    assert modern.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    body = modern.json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Clients that only know application/json keep the old contract: 200 and data null.
    legacy = await post(client, {"query": document, "variables": variables}, "application/json")
    assert legacy.status_code == 200 and legacy.headers["content-type"] == "application/json"
    assert legacy.json()["data"] is None


async def test_field_errors_stay_200_with_data_in_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, {"query": "{ watchlist { count } }"}, GRAPHQL_RESPONSE)
    assert response.status_code == 200  # execution ran: the error is the field's
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    ok = await post(client, {"query": POPULAR}, f"{GRAPHQL_RESPONSE}, application/json;q=0.9")
    assert ok.status_code == 200 and ok.headers["content-type"].startswith(GRAPHQL_RESPONSE)


async def test_queries_over_get_and_mutations_over_get_are_405(
    client: httpx.AsyncClient,
) -> None:
    got = await client.get("/graphql", params={"query": POPULAR})
    assert got.status_code == 200 and got.json() == POPULAR_ANSWER
    refused = await client.get(
        "/graphql", params={"query": 'mutation { removeStock(ticker: "AAPL") }'}
    )
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, POST"
    assert "mutations are not allowed when using GET" in refused.text


async def test_etag_and_if_none_match(
    client: httpx.AsyncClient, api_data: ApiData, pool: asyncpg.Pool
) -> None:
    first = await client.get("/graphql", params={"query": POPULAR})
    etag = first.headers["etag"]
    assert etag.startswith('"') and "Authorization" in first.headers["vary"]
    same = await client.get("/graphql", params={"query": POPULAR}, headers={"if-none-match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    listed = await client.get(
        "/graphql", params={"query": POPULAR}, headers={"if-none-match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304
    posted = await post(client, {"query": POPULAR}, **{"if-none-match": etag})
    assert posted.status_code == 304  # a query over POST is the same query

    # The data changes: the old tag no longer matches and the new body comes back.
    user = await api_data.user()
    entity = await api_data.entity("AAPL")
    await pool.execute("INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", user, entity)
    changed = await client.get(
        "/graphql", params={"query": POPULAR}, headers={"if-none-match": etag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["data"]["popularStocks"] == [{"ticker": "AAPL", "watcherCount": 1}]


async def test_mutations_and_errors_get_no_etag(
    client: httpx.AsyncClient, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    mutation = await post(
        client,
        {"query": 'mutation { addStock(ticker: "MSFT") { stock { ticker } } }'},
        authorization=f"Bearer {viewer.token}",
    )
    assert mutation.status_code == 200 and "etag" not in mutation.headers
    refused = await post(client, {"query": "{ nope }"}, GRAPHQL_RESPONSE)
    assert "etag" not in refused.headers


async def test_automatic_persisted_queries(client: httpx.AsyncClient) -> None:
    digest = sha256(POPULAR)
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    miss = await post(client, {"extensions": persisted})
    assert miss.status_code == 200
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await post(client, {"query": POPULAR, "extensions": persisted})
    assert registered.json() == POPULAR_ANSWER
    hit = await post(client, {"extensions": persisted})
    assert hit.json() == POPULAR_ANSWER
    over_get = await client.get("/graphql", params={"extensions": json.dumps(persisted)})
    assert over_get.json() == POPULAR_ANSWER and "etag" in over_get.headers

    wrong = {"persistedQuery": {"version": 1, "sha256Hash": sha256("{ health { ok } }")}}
    mismatch = await post(client, {"query": POPULAR, "extensions": wrong})
    assert mismatch.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for bad in ({"version": 2, "sha256Hash": digest}, {"version": 1, "sha256Hash": "abc"}):
        body = (await post(client, {"extensions": {"persistedQuery": bad}})).json()
        assert body["errors"][0]["extensions"]["code"] in (
            "PERSISTED_QUERY_NOT_SUPPORTED",
            "BAD_USER_INPUT",
        )


def test_the_persisted_query_store_is_bounded_in_bytes() -> None:
    texts = ["{ a }", "{ b }", "{ c }"]
    store = PersistedQueries(max_bytes=2 * entry_size(texts[0]))
    for text in texts:
        store.remember(store.resolve(_apq(text, with_query=True)))
    assert len(store) == 2 and store.bytes <= store.max_bytes
    with pytest.raises(PersistedQueryError) as missing:
        store.resolve(_apq(texts[0], with_query=False))  # the least recently used left first
    assert missing.value.code == "PERSISTED_QUERY_NOT_FOUND"
    assert store.resolve(_apq(texts[2], with_query=False)).query == texts[2]


async def test_only_documents_that_validate_are_persisted(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    store = app.state.graphql.persisted_queries
    for text in ("{ nope }", "{ popularStocks { ticker", "{ popularStocks { ticker } }"):
        persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}
        await post(client, {"query": text, "extensions": persisted})
    assert len(store) == 1  # only the valid one


def _apq(text: str, *, with_query: bool) -> GraphQLRequestData:
    return GraphQLRequestData(
        query=text if with_query else None,
        variables=None,
        operation_name=None,
        extensions={"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}},
        protocol="http",
    )


@pytest.mark.parametrize(
    ("accept", "modern"),
    [
        (None, False),
        ("application/json", False),
        ("*/*", False),
        (GRAPHQL_RESPONSE, True),
        (f"{GRAPHQL_RESPONSE}, application/json", True),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", False),
        (f"{GRAPHQL_RESPONSE};q=0", False),
        ("Application/GraphQL-Response+JSON; charset=utf-8", True),
    ],
)
def test_media_type_negotiation(accept: str | None, modern: bool) -> None:
    assert wants_graphql_response(accept) is modern


def test_if_none_match_parsing() -> None:
    assert etag_matches('"a", "b"', '"b"') and etag_matches("*", '"x"')
    assert etag_matches('W/"b"', '"b"') and not etag_matches('"c"', '"b"')
    assert not etag_matches(None, '"b"') and not etag_matches("", '"b"')


async def test_a_real_client_library_over_http_and_websocket(
    app: Starlette, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer], api_data: ApiData
) -> None:
    viewer = new_viewer()
    async with live_server(app) as address:
        headers = {"Authorization": f"Bearer {viewer.token}"}
        http = Client(transport=AIOHTTPTransport(url=f"http://{address}/graphql", headers=headers))
        async with http as session:
            added = await session.execute(
                gql('mutation { addStock(ticker: "NVDA") { stock { ticker } } }')
            )
            assert added == {"addStock": {"stock": {"ticker": "NVDA"}}}
            listed = await session.execute(
                gql("{ watchlist { count items { stock { ticker } } } }")
            )
            assert listed["watchlist"]["count"] == 1
        ws = Client(
            transport=WebsocketsTransport(
                url=f"ws://{address}/graphql",
                init_payload=headers,
                subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            )
        )
        async with ws as session:
            subscription = session.subscribe(gql("subscription { alertCreated { headline } }"))
            entity = await pool.fetchval("SELECT id FROM entities WHERE ticker = 'NVDA'")

            async def publish() -> None:
                await asyncio.sleep(0.5)  # the subscription registers first
                await insert_alerts(pool, [(viewer.id, entity)])

            publisher = asyncio.create_task(publish())
            first = await asyncio.wait_for(anext(aiter(subscription)), 10)
            await publisher
            assert "headline" in first["alertCreated"]
