"""Query guards: size, token, depth and alias limits answer BAD_USER_INPUT with HTTP 200."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fixtures.app import GraphQLClient, error_codes
from web.operation_guards import MAX_ALIASES, MAX_DEPTH, MAX_QUERY_BYTES, MAX_TOKENS


def messages(body: dict[str, object]) -> list[str]:
    return [e["message"] for e in body.get("errors") or []]  # type: ignore[attr-defined]


def nested(depth: int) -> str:
    """`{ health { f { … { ok } } } }` of this depth (graphql-depth-limit: `{ a { b } }` is 1)."""
    inner = "ok"
    for _ in range(depth - 1):
        inner = f"f {{ {inner} }}"
    return f"{{ health {{ {inner} }} }}"


async def test_depth_beyond_the_limit_is_refused(gql: GraphQLClient) -> None:
    body = await gql(nested(MAX_DEPTH + 1))
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in " ".join(messages(body))
    assert set(error_codes(body)) == {"BAD_USER_INPUT"}
    assert body.get("data") is None


async def test_depth_at_the_limit_is_not_a_depth_error(gql: GraphQLClient) -> None:
    body = await gql(nested(MAX_DEPTH))
    # Still invalid (the fields `f` do not exist), but not because of its depth.
    assert not any("depth" in m for m in messages(body))


async def test_depth_through_fragments_is_counted(gql: GraphQLClient) -> None:
    names = [chr(65 + i) for i in range(MAX_DEPTH + 2)]
    spreads = [
        f"fragment {a} on Query {{ health {{ ...{b} }} }}"
        for a, b in zip(names, names[1:], strict=False)
    ]
    query = (
        "query { ...A } "
        + " ".join(spreads)
        + f" fragment {names[-1]} on Query {{ health {{ ok }} }}"
    )
    body = await gql(query)
    assert "depth" in " ".join(messages(body))
    assert set(error_codes(body)) == {"BAD_USER_INPUT"}


async def test_alias_limit(gql: GraphQLClient) -> None:
    ok = await gql("{ " + " ".join(f"a{i}: health {{ ok }}" for i in range(MAX_ALIASES)) + " }")
    assert "errors" not in ok and len(ok["data"]) == MAX_ALIASES
    body = await gql(
        "{ " + " ".join(f"a{i}: health {{ ok }}" for i in range(MAX_ALIASES + 1)) + " }"
    )
    assert messages(body) == [f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"]
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_token_limit(gql: GraphQLClient) -> None:
    # `{ health { ok … } }` is 5 tokens (with <EOF>) plus one per `ok`.
    fits = await gql("{ health { " + "ok " * (MAX_TOKENS - 5) + "} }")
    # graphql-core's own work budget for overlapping fields may refuse it, but not for tokens.
    assert not any("tokens" in m for m in messages(fits))
    body = await gql("{ health { " + "ok " * (MAX_TOKENS - 4) + "} }")
    assert messages(body) == [
        f"Syntax Error: Document contains more than {MAX_TOKENS} tokens. Parsing aborted."
    ]
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_query_size_cap_applies_before_parsing(gql: GraphQLClient) -> None:
    padding = "#" + "x" * MAX_QUERY_BYTES + "\n"  # a comment: no tokens, only bytes
    body = await gql(padding + "{ health { ok } }")
    assert messages(body)[0].endswith(f"the limit is {MAX_QUERY_BYTES}")
    assert error_codes(body) == ["BAD_USER_INPUT"]
    # Multi-byte characters count as bytes, not characters.
    body = await gql("# " + "é" * (MAX_QUERY_BYTES // 2) + "\n{ health { ok } }")
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert (await gql("# short\n{ health { ok } }"))["data"] == {"health": {"ok": True}}


async def test_introspection_is_on_in_development(gql: GraphQLClient) -> None:
    body = await gql("{ __schema { queryType { name } } }")
    assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}


async def test_batching_is_off(client: httpx.AsyncClient) -> None:
    batch = [{"query": "{ health { ok } }"}, {"query": "{ health { ok } }"}]
    response = await client.post("/graphql", json=batch)
    assert response.status_code == 400
    assert "batching" in response.text.lower()


async def test_undefined_fragment_is_bad_input_not_a_crash(gql: GraphQLClient) -> None:
    body = await gql("{ ...Missing }")
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "Missing" in messages(body)[0]


async def test_large_realistic_query_passes_every_guard(gql: GraphQLClient) -> None:
    fields = "ok database objectStore version pendingBackfills lastEvaluationAsOf"
    query = "{ " + " ".join(f"h{i}: health {{ {fields} }}" for i in range(MAX_ALIASES)) + " }"
    body = await gql(query)
    assert "errors" not in body
    assert len(body["data"]) == MAX_ALIASES


async def test_subscription_over_http_is_bad_user_input_not_internal(
    gql: GraphQLClient, make_token: Callable[..., str]
) -> None:
    body = await gql("subscription { alertCreated { id } }", token=make_token())
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "WebSocket" in body["errors"][0]["message"]
    assert body.get("data") is None
