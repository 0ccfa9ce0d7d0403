"""APP_ENV=production: JWT config required, `token` off, errors masked, introspection off,
CORS and the WebSocket origin restricted to CORS_ALLOW_ORIGINS."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from services.errors import ConfigurationError
from services.settings import Settings
from tests.fixtures.app import TEST_JWT_SECRET, error_codes
from tests.fixtures.ws import live_server, ws_handshake
from tests.paths import ROOT
from web.app import create_app

APP_ORIGIN = "https://app.example.com"
INTROSPECTION = "{ __schema { queryType { name } } }"


def production_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}",
        "JWT_SECRET": TEST_JWT_SECRET,
        "CORS_ALLOW_ORIGINS": APP_ORIGIN,
    }
    env.update(extra)
    return env


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def prod_client(tmp_path: Path, database_url: str) -> AsyncIterator[ClientFactory]:
    """`await prod_client(**env)` → a client on a running production app built from env vars."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**extra: str) -> httpx.AsyncClient:
            settings = Settings.from_env(production_env(tmp_path, database_url, **extra))
            app = create_app(settings, database_url=database_url)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            return await stack.enter_async_context(client)

        yield make


async def post(client: httpx.AsyncClient, query: str, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- configuration ---


def test_production_requires_jwt_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"APP_ENV": "production", "DATA_DIR": str(tmp_path)})
    for name in ("JWT_SECRET", "JWT_JWKS_URL", "JWT_JWKS_FILE"):
        assert name in caught.value.message


def test_production_defaults_are_closed(tmp_path: Path) -> None:
    env = {"APP_ENV": "production", "JWT_SECRET": "s" * 40, "DATABASE_URL": "postgresql://db/app"}
    settings = Settings.from_env(env)
    assert settings.graphql_introspection is False
    assert settings.cors_allow_origins == ()
    opened = Settings.from_env({**env, "GRAPHQL_INTROSPECTION": "1"})
    assert opened.graphql_introspection is True


def run_server_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "JWT_", "CORS_"))}
    return subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_server_refuses_to_start_without_jwt_config(tmp_path: Path) -> None:
    result = run_server_cli("--port", "1", env={"APP_ENV": "production", "DATA_DIR": str(tmp_path)})
    assert_one_line_error(result, "JWT_SECRET", "JWT_JWKS_URL")
    assert result.stdout == ""


def test_server_refuses_to_start_in_production_without_database_url(tmp_path: Path) -> None:
    env = {"APP_ENV": "production", "JWT_SECRET": TEST_JWT_SECRET, "DATA_DIR": str(tmp_path)}
    result = run_server_cli("--port", "1", env={**env, "DATABASE_URL": ""})
    assert_one_line_error(result, "DATABASE_URL", "production")
    assert result.stdout == ""
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


def test_token_command_is_disabled_in_production(tmp_path: Path) -> None:
    env = {
        "APP_ENV": "production",
        "JWT_SECRET": TEST_JWT_SECRET,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://db.internal/app",
    }
    result = run_server_cli("token", "--sub", str(uuid.uuid4()), env=env)
    assert_one_line_error(result, "token", "production")
    assert result.stdout == ""


# --- the running production app ---


async def test_tokens_work_in_production(
    prod_client: ClientFactory, make_token: Callable[..., str]
) -> None:
    client = await prod_client()
    sub = uuid.uuid4()
    body = await post(client, "{ me { id } }", make_token(sub))
    assert body["data"]["me"]["id"] == str(sub)
    assert error_codes(await post(client, "{ me { id } }")) == ["UNAUTHENTICATED"]


async def test_introspection_and_graphiql_are_off(
    prod_client: ClientFactory,
) -> None:
    client = await prod_client()
    body = await post(client, INTROSPECTION)
    assert set(error_codes(body)) == {"BAD_USER_INPUT"} and body["data"] is None
    assert "introspection" in body["errors"][0]["message"].lower()
    body = await post(client, '{ __type(name: "Query") { name } }')
    assert set(error_codes(body)) == {"BAD_USER_INPUT"}
    assert (await post(client, "{ __typename }"))["data"] == {"__typename": "Query"}
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404


async def test_introspection_can_be_enabled_explicitly(
    prod_client: ClientFactory,
) -> None:
    client = await prod_client(GRAPHQL_INTROSPECTION="1")
    body = await post(client, INTROSPECTION)
    assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200


async def test_unexpected_errors_are_masked(
    prod_client: ClientFactory,
    make_token: Callable[..., str],
    pool: asyncpg.Pool,
) -> None:
    client = await prod_client()
    token = make_token()
    await pool.execute("DROP TABLE watchlists CASCADE")  # every watchlist read now fails in SQL
    response = await client.post(
        "/graphql",
        json={"query": "{ watchlist { count } }"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert error_codes(body) == ["INTERNAL"]
    assert body["errors"][0]["message"] == "Internal server error"
    for leak in ("watchlists", "relation", "Traceback", "asyncpg", "SELECT"):
        assert leak not in response.text


async def test_cors_is_restricted_to_the_allowlist(
    prod_client: ClientFactory,
) -> None:
    client = await prod_client()
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
    }
    allowed = await client.options("/graphql", headers={"origin": APP_ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == APP_ORIGIN
    refused = await client.options(
        "/graphql", headers={"origin": "https://evil.example.net", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers
    simple = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://evil.example.net"}
    )
    assert "access-control-allow-origin" not in simple.headers


async def test_empty_allowlist_refuses_every_cross_origin(
    prod_client: ClientFactory,
) -> None:
    client = await prod_client(CORS_ALLOW_ORIGINS="")
    preflight = {"origin": APP_ORIGIN, "access-control-request-method": "POST"}
    response = await client.options("/graphql", headers=preflight)
    assert "access-control-allow-origin" not in response.headers


async def test_websocket_origin_is_checked_in_production(
    tmp_path: Path, database_url: str, make_token: Callable[..., str]
) -> None:
    settings = Settings.from_env(production_env(tmp_path, database_url))
    token = make_token()
    protocols: dict[str, Any] = {"subprotocols": ["graphql-transport-ws"]}
    async with live_server(create_app(settings, database_url=database_url)) as address:
        assert await ws_handshake(address, token, origin=APP_ORIGIN, **protocols)
        with pytest.raises(InvalidStatus) as refused:
            await ws_handshake(address, token, origin="https://evil.example.net", **protocols)
        assert refused.value.response.status_code == 403
