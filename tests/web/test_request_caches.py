"""Per-process request caches: documents, verified tokens, ensured users; and orjson output."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
from starlette.applications import Starlette
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from services.auth.tokens import VERIFIED_TOKEN_CACHE_SECONDS, TokenVerifier, issue_token
from services.errors import Unauthenticated
from services.settings import Settings
from services.ttl_cache import TtlCache
from tests.fixtures.app import GraphQLClient, error_codes
from tests.fixtures.ws import live_server
from web.app import create_app
from web.operation_guards import DOCUMENT_CACHE_SIZE, MAX_QUERY_BYTES, MAX_TOKENS

SECRET = "cache-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def verifier(tmp_path: Path) -> TokenVerifier:
    settings = Settings.from_env({"APP_ENV": "development", "DATA_DIR": str(tmp_path)})
    return TokenVerifier(settings, secret=SECRET, leeway_seconds=0)


# --- TtlCache ---


def test_ttl_cache_evicts_least_recently_used_and_expires() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(2, clock=clock)
    cache.put("a", 1, clock.now + 10)
    cache.put("b", 2, clock.now + 5)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3, clock.now + 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now += 10
    assert cache.get("a") is None and len(cache) == 1
    cache.put("d", 4, clock.now)  # a deadline already reached stores nothing
    assert cache.get("d") is None
    with pytest.raises(ValueError):
        TtlCache(0)


# --- verified tokens ---


async def test_cached_token_is_still_rejected_once_expired(verifier: TokenVerifier) -> None:
    sub = uuid.uuid4()
    token = issue_token(SECRET, sub, ttl_seconds=1)
    assert (await verifier.verify(token)).sub == sub
    assert (await verifier.verify(token)).sub == sub  # served from the cache
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)


async def test_other_tokens_for_the_same_sub_are_verified_on_their_own(
    verifier: TokenVerifier,
) -> None:
    sub = uuid.uuid4()
    good = issue_token(SECRET, sub, email="a@example.com")
    assert (await verifier.verify(good)).email == "a@example.com"
    forged = issue_token("another-secret-of-sufficient-length-0123456789", sub)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await verifier.verify(forged)
    header, payload, signature = good.split(".")
    tampered = (
        f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    )
    with pytest.raises(Unauthenticated):
        await verifier.verify(tampered)
    renamed = issue_token(SECRET, sub, email="b@example.com")
    assert (await verifier.verify(renamed)).email == "b@example.com"
    assert (await verifier.verify(good)).email == "a@example.com"


async def test_verified_token_is_remembered_at_most_a_minute(verifier: TokenVerifier) -> None:
    clock = FakeClock(time.time())
    verifier._verified.clock = clock
    token = issue_token(SECRET, uuid.uuid4(), ttl_seconds=3600)
    await verifier.verify(token)
    assert verifier._verified.get(token) is not None
    clock.now += VERIFIED_TOKEN_CACHE_SECONDS
    assert verifier._verified.get(token) is None


# --- ensured users ---


async def _email_of(pool: asyncpg.Pool, sub: uuid.UUID) -> str | None:
    email: str | None = await pool.fetchval("SELECT email FROM users WHERE id = $1", sub)
    return email


async def test_first_watchlist_request_creates_the_user_row(
    gql: GraphQLClient, pool: asyncpg.Pool, make_token: Callable[..., str]
) -> None:
    sub = uuid.uuid4()
    body = await gql("{ watchlist { count } }", token=make_token(sub, email="new@example.com"))
    assert body["data"] == {"watchlist": {"count": 0}} and "errors" not in body
    assert await _email_of(pool, sub) == "new@example.com"


async def test_email_changes_are_applied_on_the_next_request(
    gql: GraphQLClient, pool: asyncpg.Pool, make_token: Callable[..., str]
) -> None:
    sub = uuid.uuid4()
    for email in ("one@example.com", "two@example.com", "one@example.com"):
        body = await gql("{ watchlist { count } }", token=make_token(sub, email=email))
        assert "errors" not in body, body
        assert await _email_of(pool, sub) == email
    body = await gql("{ me { email } }", token=make_token(sub, email="one@example.com"))
    assert body["data"]["me"]["email"] == "one@example.com"


async def test_a_new_app_upserts_again(
    app: Starlette,
    settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    make_token: Callable[..., str],
) -> None:
    """The ensured-users cache belongs to one app (one pool), never to the process."""
    sub = uuid.uuid4()
    token = make_token(sub)
    assert "errors" not in await _watchlist_via(app, token)
    await pool.execute("DELETE FROM users WHERE id = $1", sub)
    fresh = create_app(settings, database_url=database_url)
    async with fresh.router.lifespan_context(fresh):
        assert "errors" not in await _watchlist_via(fresh, token)
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", sub) == 1


async def _watchlist_via(app: Starlette, token: str) -> dict[str, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await GraphQLClient(http)("{ watchlist { count } }", token=token)


# --- parse and validation caches ---


async def test_a_repeated_invalid_document_gets_the_same_errors(gql: GraphQLClient) -> None:
    query = "{ health { nope } }"
    first, second = await gql(query), await gql(query)
    assert first == second
    assert error_codes(first) == ["BAD_USER_INPUT"]
    assert "nope" in first["errors"][0]["message"]


async def test_document_caches_are_bounded(gql: GraphQLClient) -> None:
    parse_cache, validate_cache = (
        _get_parse_cache(DOCUMENT_CACHE_SIZE),
        _get_validate_cache(DOCUMENT_CACHE_SIZE),
    )
    # Distinct documents that touch no database: the caches, not the health check, are tested.
    for n in range(DOCUMENT_CACHE_SIZE + 20):
        body = await gql(f"{{ a{n}: __typename }}")
        assert body["data"] == {f"a{n}": "Query"}
    for cache in (parse_cache, validate_cache):
        info = cache.cache_info()  # type: ignore[attr-defined]
        assert info.maxsize == DOCUMENT_CACHE_SIZE
        assert info.currsize == DOCUMENT_CACHE_SIZE


async def test_refused_documents_do_not_enter_the_parse_cache(gql: GraphQLClient) -> None:
    parse_cache = _get_parse_cache(DOCUMENT_CACHE_SIZE)
    await gql("{ health { ok } }")
    before = parse_cache.cache_info()  # type: ignore[attr-defined]
    oversized = "#" + "x" * MAX_QUERY_BYTES + "\n{ health { ok } }"
    too_many_tokens = "{ health { " + "ok " * MAX_TOKENS + "} }"
    for query in (oversized, too_many_tokens, oversized):
        assert error_codes(await gql(query)) == ["BAD_USER_INPUT"]
    after = parse_cache.cache_info()  # type: ignore[attr-defined]
    # The size cap refuses before the lookup; the token-limit error is raised, never stored.
    assert after.misses - before.misses == 1
    assert after.hits == before.hits


# --- orjson responses ---


async def test_responses_are_compact_utf8_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": '{ stock(ticker: "ÉTÉ") { ticker } }'})
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content) == response.json()
    assert response.content.startswith(b'{"data":{"stock":null},"errors":[{')
    assert "ÉTÉ".encode() in response.content  # UTF-8 as is, not \u escapes


async def test_websocket_messages_stay_text_frames(
    app: Starlette, make_token: Callable[..., str]
) -> None:
    async with live_server(app) as address:
        protocols = [Subprotocol("graphql-transport-ws")]
        async with connect(f"ws://{address}/graphql", subprotocols=protocols) as ws:
            payload = {"Authorization": f"Bearer {make_token()}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(reply, str)
            assert json.loads(reply) == {"type": "connection_ack"}
