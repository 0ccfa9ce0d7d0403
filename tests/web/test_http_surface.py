"""The HTTP surface: /api/health, GraphQL over GET/POST, bad bodies, CORS, WebSocket origin."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from services.db import database_name
from services.settings import Settings
from tests.fixtures.app import GraphQLClient, error_codes
from tests.fixtures.ws import live_server, ws_handshake
from web.app import create_app

HEALTH_FIELDS = "{ health { ok database objectStore version pendingBackfills lastEvaluationAsOf } }"


async def seed_queue_and_signal(pool: asyncpg.Pool) -> None:
    entity = await pool.fetchval("INSERT INTO entities (ticker) VALUES ('ACME') RETURNING id")
    await pool.execute(
        "INSERT INTO backfill_queue (ticker, status)"
        " SELECT t, s FROM unnest($1::text[], $2::text[]) AS x(t, s)",
        ["ACME", "BETA", "GAMA"],
        ["pending", "pending", "completed"],
    )
    await pool.execute(
        "INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime,"
        " fundamental_direction) SELECT $1, d, 'UNKNOWN', 'UNKNOWN', 'UNKNOWN'"
        " FROM unnest($2::date[]) AS d",
        entity,
        [date(2026, 11, 20), date(2026, 11, 27)],
    )


async def test_api_health_reports_every_dependency(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await seed_queue_and_signal(pool)
    response = await client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "ok": True,
        "database": True,
        "objectStore": True,
        "version": body["version"],
        "pendingBackfills": 2,
        "lastEvaluationAsOf": "2026-11-27",
    }
    assert body["version"] and body["version"] != "unknown"


async def test_health_query_mirrors_api_health(
    client: httpx.AsyncClient, gql: GraphQLClient, pool: asyncpg.Pool
) -> None:
    await seed_queue_and_signal(pool)
    http_body = (await client.get("/api/health")).json()
    graphql_body = await gql(HEALTH_FIELDS)
    assert graphql_body["data"]["health"] == http_body


async def test_health_is_503_when_the_object_store_is_unusable(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    broken = dataclasses.replace(settings, object_store_url=f"file://{blocker}/objects")
    async with running_app(broken, database_url) as http:
        response = await http.get("/api/health")
        assert response.status_code == 503
        assert response.json()["objectStore"] is False
        assert response.json()["database"] is True
        body = (await http.post("/graphql", json={"query": "{ health { ok objectStore } }"})).json()
        assert body["data"]["health"] == {"ok": False, "objectStore": False}


async def test_health_is_503_when_the_database_is_down(
    client: httpx.AsyncClient, server_dsn: str, database_url: str
) -> None:
    name = database_name(database_url)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        response = await client.get("/api/health")
        assert response.status_code == 503
        assert response.json()["database"] is False
        assert response.json()["pendingBackfills"] == 0
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


@contextlib.asynccontextmanager
async def running_app(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database_url=database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


# --- GraphQL over HTTP ---


async def test_get_query_works(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{ health { database } }"})
    assert response.status_code == 200
    assert response.json()["data"] == {"health": {"database": True}}


async def test_browser_get_serves_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_graphql_errors_keep_http_200(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ health { nope } }"})
    assert response.status_code == 200
    assert error_codes(response.json()) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"{not json", "application/json", "json"),
        (b"", "application/json", "json"),
        (b'"just a string"', "application/json", ""),
        (b"42", "application/json", ""),
        (b'{"query": 5}', "application/json", ""),
        (b'{"variables": {}}', "application/json", "query"),
        (b'[{"query": "{ health { ok } }"}]', "application/json", "batch"),
        (b"query=x", "text/plain", ""),
    ],
)
async def test_malformed_bodies_are_400_not_500(
    client: httpx.AsyncClient, body: bytes, content_type: str, fragment: str
) -> None:
    response = await client.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert fragment.lower() in response.text.lower()


async def test_oversized_body_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    huge = json.dumps({"query": "{ health { ok } }", "variables": {"x": "y" * 2_000_000}})
    response = await client.post(
        "/graphql", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_codes(response.json()) == ["BAD_USER_INPUT"]


async def test_streamed_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ health { ok } }", "variables": {"x": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    response = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404


# --- CORS (development default: any origin) ---


async def test_development_cors_allows_any_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/graphql",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


# --- WebSocket: subprotocol and origin, over a real uvicorn server ---


async def test_websocket_speaks_only_graphql_transport_ws(
    settings: Settings, database_url: str, make_token: Callable[..., str]
) -> None:
    token = make_token()
    async with live_server(create_app(settings, database_url=database_url)) as address:
        assert await ws_handshake(address, token, subprotocols=["graphql-transport-ws"]) == (
            "graphql-transport-ws"
        )
        legacy = [Subprotocol("graphql-ws")]
        async with connect(f"ws://{address}/graphql", subprotocols=legacy) as ws:
            with pytest.raises(ConnectionClosedError, match="4406"):
                await asyncio.wait_for(ws.recv(), 5)


async def test_websocket_origin_allowlist(
    settings: Settings, database_url: str, make_token: Callable[..., str]
) -> None:
    token = make_token()
    restricted = dataclasses.replace(settings, cors_allow_origins=("https://app.example.com",))
    async with live_server(create_app(restricted, database_url=database_url)) as address:
        protocols: Any = {"subprotocols": ["graphql-transport-ws"]}
        allowed = await ws_handshake(address, token, origin="https://app.example.com", **protocols)
        assert allowed == "graphql-transport-ws"
        # No Origin header: a non-browser client, allowed.
        assert await ws_handshake(address, token, **protocols) == "graphql-transport-ws"
        with pytest.raises(InvalidStatus) as refused:
            await ws_handshake(address, token, origin="https://evil.example.net", **protocols)
        assert refused.value.response.status_code == 403


async def test_livez_and_readyz(app: Starlette, client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"ok": True}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ok": True, "database": True}
    # The object store is not part of readiness: its outage leaves the instance serving.
    graphql = app.state.graphql
    store, graphql.object_store = graphql.object_store, None
    try:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/api/health")).status_code == 503  # the detailed report says so
    finally:
        graphql.object_store = store
    # Without the database it is not ready, and still alive.
    await graphql.pool.close()
    down = await client.get("/readyz")
    assert down.status_code == 503 and down.json() == {"ok": False, "database": False}
    assert (await client.get("/livez")).status_code == 200


async def test_statement_cache_size_reaches_the_pool(settings: Settings, database_url: str) -> None:
    no_cache = dataclasses.replace(settings, database_statement_cache_size=0)
    application = create_app(no_cache, database_url=database_url)
    async with application.router.lifespan_context(application):
        pool = application.state.graphql.pool
        async with pool.acquire() as conn:
            assert conn._con._stmt_cache.get_max_size() == 0
            assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
    assert (
        Settings.from_env({"DATABASE_STATEMENT_CACHE_SIZE": "0"}).database_statement_cache_size == 0
    )
