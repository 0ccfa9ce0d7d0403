"""Oversized and malformed input against a real server process: each is refused with a clear
error (a 4xx with a GraphQL error body and a code, a GraphQL error code, or a
graphql-transport-ws close code), never a 500, a leaked traceback or unbounded memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fixtures.hostile import (
    HostileServer,
    assert_clean_message,
    assert_clean_response,
)
from tests.fixtures.ws import PROTOCOL, SUBSCRIPTION, wait_for_subscribers

pytestmark = pytest.mark.usefixtures("server_log_stays_clean")

MB = 1024 * 1024
ONBOARDING = (
    "mutation($t: [String!]!) { completeOnboarding(investingStyle: VALUE, tickers: $t) { id } }"
)
SETTINGS = "mutation($i: UpdateSettingsInput!) { updateSettings(input: $i) { alertTypes } }"


def codes(body: Any) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def post(
    server: HostileServer,
    body: dict[str, Any] | bytes,
    *,
    token: str | None = None,
    content_type: str | None = "application/json",
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(server.url, content=content, headers=headers)


async def error_codes_of(
    server: HostileServer, query: str, variables: dict[str, Any] | None = None
) -> list[str]:
    """The error codes of an operation answered with GraphQL errors (HTTP 200, no leak)."""
    response = await post(server, {"query": query, "variables": variables}, token=server.token)
    assert response.status_code == 200, response.text
    body = assert_clean_response(response)
    assert body.get("errors"), body
    return codes(body)


def assert_refused(response: httpx.Response, status: int) -> None:
    """An HTTP-level refusal: that status and a GraphQL error body with a code, no data."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = assert_clean_response(response)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"], body
    assert "data" not in body, body


def rss(server: HostileServer) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


def nested_list(depth: int) -> str:
    """JSON text of `depth` nested arrays (json.dumps recurses and would stop near 1,000)."""
    return "[" * depth + "]" * depth


# -- oversized ---------------------------------------------------------------------------


async def test_a_ten_megabyte_body_is_413_with_a_graphql_error(
    hostile_server: HostileServer,
) -> None:
    before = rss(hostile_server)
    huge = {"query": "{ health { ok } }", "variables": {"x": "y" * (10 * MB)}}
    assert_refused(await post(hostile_server, huge), 413)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ health { ok } }", "variables": {"x": "'
        for _ in range(160):  # 10 MiB without a Content-Length
            yield b"y" * 65536
        yield b'"}}'

    async with httpx.AsyncClient(timeout=60) as http:
        streamed = await http.post(
            hostile_server.url, content=chunks(), headers={"content-type": "application/json"}
        )
    assert_refused(streamed, 413)
    assert rss(hostile_server) - before < 100 * MB


async def test_ten_thousand_element_lists_in_variables_are_refused(
    hostile_server: HostileServer,
) -> None:
    tickers = [f"T{i}" for i in range(10_000)]
    assert await error_codes_of(hostile_server, ONBOARDING, {"t": tickers}) == ["BAD_USER_INPUT"]
    types = ["TREND_BREAK"] * 10_000 + ["NOT_A_TYPE"]
    assert await error_codes_of(hostile_server, SETTINGS, {"i": {"alertTypes": types}}) == [
        "BAD_USER_INPUT"
    ]


async def test_ten_thousand_repeats_of_one_alert_type_store_it_once(
    hostile_server: HostileServer,
) -> None:
    body = {"query": SETTINGS, "variables": {"i": {"alertTypes": ["TREND_BREAK"] * 10_000}}}
    response = await post(hostile_server, body, token=hostile_server.token)
    assert response.status_code == 200, response.text
    parsed = assert_clean_response(response)
    assert parsed["data"]["updateSettings"]["alertTypes"] == ["TREND_BREAK"], parsed


@pytest.mark.parametrize("depth", [10_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object"])
async def test_json_nested_deeper_than_the_parser_allows_is_400_not_500(
    hostile_server: HostileServer, depth: int, shape: str
) -> None:
    """Regression: the json module's RecursionError was an HTTP 500."""
    nested = nested_list(depth) if shape == "array" else '{"a":' * depth + "1" + "}" * depth
    body = '{"query": "{ health { ok } }", "variables": {"v": ' + nested + "}}"
    assert_refused(await post(hostile_server, body.encode()), 400)


async def test_nesting_within_the_parser_limit_is_answered_uncached_or_refused(
    hostile_server: HostileServer,
) -> None:
    """Regression: 1,000 levels parse but orjson cannot write them as a cache key (500)."""
    unused = '{"query": "{ popularStocks { ticker } }", "variables": {"v": '
    response = await post(hostile_server, (unused + nested_list(1_000) + "}}").encode())
    assert response.status_code == 200, response.text
    assert assert_clean_response(response)["data"] == {
        "popularStocks": [{"ticker": "AAPL"}, {"ticker": "KO"}]
    }
    used = json.dumps({"query": ONBOARDING, "variables": {"t": "PLACEHOLDER"}})
    used = used.replace('"PLACEHOLDER"', nested_list(1_000))
    response = await post(hostile_server, used.encode(), token=hostile_server.token)
    assert codes(assert_clean_response(response)) == ["BAD_USER_INPUT"]


# -- malformed bytes and JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ health { ok } }", "operationName": "\xff\xfe"}',
        b'{"query": "{ health { ok \xc3 } }"}',
        b"\xef\xbb\xbf\xff",
        b'{"query": "{ health { ok } }", "variables": {"s": "\\ud800"}}',
        b'{"query": "{ health { ok } }", "variables": {"a": NaN}}',
        b'{"query": "{ health { ok } }", "variables": {"a": Infinity}}',
        b'{"query": "{ health { ok } }"',
        b'{"query": "{ health { ok } }"}}',
        b"{'query': '{ health { ok } }'}",
        b"",
        b"null",
        b"[]",
        b"[1, 2]",
        b'"{ health { ok } }"',
        b'{"query": ["{ health { ok } }"]}',
        b'{"query": "{ health { ok } }", "variables": []}',
        b'{"query": "{ health { ok } }", "variables": "x"}',
        b'{"query": "{ health { ok } }", "extensions": 5}',
        b'{"query": "{ health { ok } }", "operationName": 5}',
        b'{"query": "query($f: Int) { popularStocks(limit: $f) { ticker } }", '
        b'"variables": {"f": ' + b"9" * 5_000 + b"}}",
    ],
    ids=lambda body: body[:40].decode(errors="backslashreplace"),
)
async def test_malformed_json_bodies_are_400_with_a_graphql_error(
    hostile_server: HostileServer, body: bytes
) -> None:
    """Regression: invalid UTF-8 and a 5,000-digit number were HTTP 500."""
    assert_refused(await post(hostile_server, body), 400)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "application/xml",
    ],
)
async def test_wrong_content_types_are_400_with_a_graphql_error(
    hostile_server: HostileServer, content_type: str | None
) -> None:
    body = b'--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
    body += b'{"query": "{ health { ok } }"}\r\n--x--\r\n'
    assert_refused(await post(hostile_server, body, content_type=content_type), 400)


# -- text and numbers the database or Python cannot hold --------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($q: String!) { searchStocks(query: $q) { ticker } }", {"q": "ap\x00ple"}),
        ('{ searchStocks(query: "ap\\u0000ple") { ticker } }', None),
        ("query($t: String!) { stock(ticker: $t) { ticker } }", {"t": "\x00"}),
        (ONBOARDING, {"t": ["AAPL", "K\x00O"]}),
        (
            'mutation($d: String) { createWebhook(url: "http://127.0.0.1:9/", description: $d)'
            " { secret } }",
            {"d": "hook\x00"},
        ),
        (
            'mutation { createWebhook(url: "http://127.0.0.1:9/", description: "a\\u0000b")'
            " { secret } }",
            None,
        ),
        ("query($a: String) { alerts(after: $a) { totalCount } }", {"a": "\x00"}),
        ("query($i: ID!) { alert(id: $i) { id } }", {"i": "\x00"}),
    ],
)
async def test_nul_characters_in_text_are_bad_user_input(
    hostile_server: HostileServer, query: str, variables: dict[str, Any] | None
) -> None:
    """Regression: PostgreSQL refuses U+0000 in text; searchStocks and createWebhook were
    INTERNAL."""
    assert await error_codes_of(hostile_server, query, variables) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": 10**30}),
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": 2**63}),
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": 2**31}),
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": -1}),
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": 1.5}),
        ("query($f: Int) { alerts(first: $f) { totalCount } }", {"f": "20"}),
        ("{ alerts(first: 1000000000000000000000000000000) { totalCount } }", None),
        ("{ alerts(first: -1) { totalCount } }", None),
        ("{ alerts(first: 0) { totalCount } }", None),
        ("query($f: Int) { popularStocks(limit: $f) { ticker } }", {"f": -(10**30)}),
        ("query($d: Int) { recentAlertsCount(days: $d) }", {"d": 2**31 - 1}),
        ("{ deliveries(first: 99999999999) { totalCount } }", None),
    ],
)
async def test_out_of_range_integers_are_bad_user_input(
    hostile_server: HostileServer, query: str, variables: dict[str, Any] | None
) -> None:
    """Regression: a variable beyond 64 bits crashed the response cache's key (HTTP 500)."""
    assert set(await error_codes_of(hostile_server, query, variables)) == {"BAD_USER_INPUT"}


PRICES = 'query($f: Date, $t: Date) { stock(ticker: "AAPL") { prices(from: $f, to: $t) { date } } }'


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (PRICES, {"f": "99999-01-01"}),
        (PRICES, {"t": "+99999-01-01"}),
        (PRICES, {"f": "2024-02-30"}),
        (PRICES, {"f": "0000-01-01"}),
        (PRICES, {"t": "0001-01-01"}),
        (PRICES, {"f": "0001-01-01", "t": "0001-01-02"}),
        (PRICES, {"f": "1899-12-31", "t": "1900-01-02"}),
        (PRICES, {"f": 20240101}),
        ('{ stock(ticker: "AAPL") { prices(from: "99999-01-01") { date } } }', None),
        ('{ stock(ticker: "AAPL") { prices(to: "0001-01-01") { date } } }', None),
        ('mutation { markAllAlertsOpened(before: "99999-01-01T00:00:00Z") }', None),
        ('mutation { markAllAlertsOpened(before: "0001-01-01T00:00:00+14:00") }', None),
        ('mutation { markAllAlertsOpened(before: "9999-12-31T23:59:59-14:00") }', None),
        ('mutation { markAllAlertsOpened(before: "2024-13-01T00:00:00Z") }', None),
    ],
)
async def test_dates_out_of_range_are_bad_user_input(
    hostile_server: HostileServer, query: str, variables: dict[str, Any] | None
) -> None:
    """Regression: year-1 dates overflowed the price window and asyncpg's timestamptz (INTERNAL)."""
    assert await error_codes_of(hostile_server, query, variables) == ["BAD_USER_INPUT"]


async def test_the_last_representable_dates_are_answered(hostile_server: HostileServer) -> None:
    body = {"query": PRICES, "variables": {"f": "9999-12-30", "t": "9999-12-31"}}
    response = await post(hostile_server, body)
    assert assert_clean_response(response)["data"] == {"stock": {"prices": []}}
    early = {"query": PRICES, "variables": {"f": "1900-01-01", "t": "1900-12-31"}}
    assert assert_clean_response(await post(hostile_server, early))["data"] == {
        "stock": {"prices": []}
    }


# -- GET -----------------------------------------------------------------------------------


async def raw_get(server: HostileServer, target: bytes) -> tuple[int, bytes]:
    """One GET over a plain socket (httpx refuses to build URLs this long); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.process.port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_get_with_a_query_string_past_the_query_limit_is_bad_user_input(
    hostile_server: HostileServer,
) -> None:
    status, body = await raw_get(hostile_server, b"/graphql?query=%7B" + b"a" * 60_000 + b"%7D")
    assert status == 200, body[:300]
    error = json.loads(body)["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "limit" in error["message"]


@pytest.mark.parametrize("size", [70_000, 1_000_000, 8_000_000])
async def test_get_with_a_request_line_past_uvicorns_limit_is_400(
    hostile_server: HostileServer, size: int
) -> None:
    """uvicorn (httptools) refuses a request target over 64 KiB before the app sees it."""
    before = rss(hostile_server)
    status, body = await raw_get(hostile_server, b"/graphql?query=%7B" + b"a" * size + b"%7D")
    assert (status, body) == (400, b"Invalid HTTP request received.")
    assert rss(hostile_server) - before < 100 * MB


@pytest.mark.parametrize(
    "query",
    ["{ }", "query A { } query B { health { ok } }", '{ stock(ticker: "AAPL") { } }'],
)
async def test_empty_selection_sets_are_bad_user_input(
    hostile_server: HostileServer, query: str
) -> None:
    """Regression: graphql-core 3.3 parses `{ }` and the depth rule's max() crashed (INTERNAL)."""
    assert set(await error_codes_of(hostile_server, query)) == {"BAD_USER_INPUT"}


@pytest.mark.parametrize(
    "target",
    [
        b"/graphql?query=%ff%fe",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&variables=%ff",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&variables=%5B1%5D",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&variables=5",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&variables=%7B",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&extensions=5",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&extensions=%7B%22persistedQuery%22%3A5%7D",
        b"/graphql?query=%7Bhealth%7Bok%7D%7D&variables=" + b"%5B" * 5_000 + b"%5D" * 5_000,
        b"/graphql?query=%7B%20health%20%7B%20ok%20%7D%20%7D%00",
        b"/graphql?query=mutation%7BremoveStock(ticker%3A%22A%22)%7D",
        b"/graphql?query=",
        b"/graphql",
    ],
)
async def test_malformed_get_requests_are_client_errors(
    hostile_server: HostileServer, target: bytes
) -> None:
    status, body = await raw_get(hostile_server, target)
    assert 200 <= status < 500, (status, body[:300])
    assert b"Traceback" not in body
    if status != 200 or b"errors" in body:
        errors = json.loads(body)["errors"]
        assert errors and all(e["message"] and e["extensions"]["code"] for e in errors), errors
        assert "INTERNAL" not in {e["extensions"]["code"] for e in errors}, errors


# -- WebSocket (graphql-transport-ws) ------------------------------------------------------


async def close_code(ws: Any, seconds: float = 15.0) -> int:
    """Reads until the server closes; its close code (messages before it must be clean)."""
    try:
        while True:
            assert_clean_message(await asyncio.wait_for(ws.recv(), seconds))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code


@asynccontextmanager
async def socket(server: HostileServer, *, init: bool) -> AsyncIterator[Any]:
    """A graphql-transport-ws connection, acknowledged when `init`."""
    async with connect(server.ws_url, subprotocols=[PROTOCOL], max_size=None) as ws:  # type: ignore[list-item]
        if init:
            payload = {"Authorization": f"Bearer {server.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = assert_clean_message(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "connection_ack", ack
        yield ws


def subscribe(op_id: str, query: str = SUBSCRIPTION % "id", **variables: Any) -> str:
    payload = {"query": query, "variables": variables}
    return json.dumps({"id": op_id, "type": "subscribe", "payload": payload})


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([subscribe("1")], 4401),
        ([json.dumps({"type": "next", "id": "1", "payload": {}})], 4400),
        ([json.dumps({"type": "nonsense"})], 4400),
        (["not json"], 4400),
        ([b"\x00\x01binary"], 4400),
        (["[" * 10_000 + "]" * 10_000], 4400),
    ],
    ids=["subscribe", "next", "unknown-type", "invalid-json", "binary", "deep-json"],
)
async def test_messages_before_connection_init_close_the_socket(
    hostile_server: HostileServer, frames: list[str | bytes], code: int
) -> None:
    async with socket(hostile_server, init=False) as ws:
        for frame in frames:
            await ws.send(frame)
        assert await close_code(ws) == code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b'{"type": "ping"}', 4400),
        (b"\xff\xfe\xfd", 4400),
        ("{not json", 4400),
        ('{"type": "subscribe", "id": "1", "payload": {"query": "{ health { ok } }"', 4400),
        ("[" * 10_000 + "]" * 10_000, 4400),
        ('{"a":' * 5_000 + "1" + "}" * 5_000, 4400),
        ("[]", 4400),
        ("5", 4400),
        ("null", 4400),
        ('"subscribe"', 4400),
        ('{"type": "subscribe"}', 4400),
        ('{"type": "subscribe", "id": "1"}', 4400),
        ('{"type": "subscribe", "id": 1, "payload": {"query": "{ health { ok } }"}}', 4400),
        ('{"type": "subscribe", "id": "1", "payload": {"query": 5}}', 4400),
        ('{"type": "subscribe", "id": "1", "payload": "x"}', 4400),
        ('{"type": "subscribe", "id": "1", "payload": {"query": "{ a }", "variables": 5}}', 4400),
        ('{"type": "connection_init"}', 4429),
        ('{"type": 5}', 4400),
        (
            '{"type": "subscribe", "id": "1", "payload": {"query": "{ health { ok } }"}, "x": NaN}',
            4400,
        ),
    ],
    ids=lambda value: str(value)[:30] if not isinstance(value, int) else str(value),
)
async def test_malformed_frames_after_init_close_the_socket(
    hostile_server: HostileServer, frame: str | bytes, code: int
) -> None:
    async with socket(hostile_server, init=True) as ws:
        await ws.send(frame)
        assert await close_code(ws) == code


async def test_a_duplicate_subscription_id_closes_the_socket_4409(
    hostile_server: HostileServer,
) -> None:
    async with socket(hostile_server, init=True) as ws:
        await ws.send(subscribe("same"))
        await ws.send(subscribe("same"))
        assert await close_code(ws) == 4409


# 11 levels; the limit is 10.
DEEPER_THAN_ALLOWED = (
    "{ alerts { edges { node { stock { myAlerts { stock { myAlerts { stock { myAlerts { stock"
    " { ticker } } } } } } } } } } }"
)


async def test_operations_with_hostile_input_get_coded_errors_on_the_socket(
    hostile_server: HostileServer,
) -> None:
    operations = [
        (
            "nul",
            subscribe("nul", "query($q: String!) { searchStocks(query: $q) { ticker } }", q="\x00"),
        ),
        ("big", subscribe("big", "{ health { ok } }" + " " * 40_000)),
        ("deep", subscribe("deep", DEEPER_THAN_ALLOWED)),
        ("int", subscribe("int", "query($f: Int) { alerts(first: $f) { totalCount } }", f=10**30)),
        ("empty", subscribe("empty", "{ }")),
        ("after", subscribe("after", SUBSCRIPTION % "id", after="\x00")),
    ]
    async with socket(hostile_server, init=True) as ws:
        for _, frame in operations:
            await ws.send(frame)
        pending = {op_id for op_id, _ in operations}
        while pending:
            message = assert_clean_message(await asyncio.wait_for(ws.recv(), 15))
            if message["type"] in ("error", "complete"):
                pending.discard(message["id"])
            if message["type"] == "error":
                codes = {e["extensions"]["code"] for e in message["payload"]}
                assert codes <= {"BAD_USER_INPUT", "QUERY_TOO_COSTLY"}, message
        await ws.send(json.dumps({"type": "ping"}))
        assert assert_clean_message(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"


@pytest.mark.parametrize(
    "query",
    ["subscription { alertCreated(", "{ " + "health { ok } " * 600 + "}"],
    ids=["syntax", "token-limit"],
)
async def test_a_syntax_error_on_the_socket_closes_it_4400(
    hostile_server: HostileServer, query: str
) -> None:
    """Regression: the parser cache's syntax error escaped the operation task (a logged
    traceback and a bare `complete`); graphql-transport-ws closes with 4400."""
    async with socket(hostile_server, init=True) as ws:
        await ws.send(subscribe("bad", query))
        assert await close_code(ws) == 4400


async def test_a_thousand_subscribes_on_one_socket_are_bounded(
    hostile_server: HostileServer,
) -> None:
    """In-flight operations per socket are capped; the rest get a coded error; memory is bounded."""
    before = rss(hostile_server)
    async with socket(hostile_server, init=True) as ws:
        for index in range(1_000):
            await ws.send(subscribe(f"op{index}"))
        refused = 0
        while refused < 900:
            message = assert_clean_message(await asyncio.wait_for(ws.recv(), 30))
            assert message["type"] == "error", message
            codes_of = {e["extensions"]["code"] for e in message["payload"]}
            assert codes_of == {"BAD_USER_INPUT"}, message
            refused += 1
        await ws.send(json.dumps({"type": "ping"}))
        assert assert_clean_message(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    await wait_for_subscribers(hostile_server.process, 0, seconds=30)
    assert rss(hostile_server) - before < 100 * MB


async def test_a_frame_past_the_size_limit_closes_the_socket(
    hostile_server: HostileServer,
) -> None:
    before = rss(hostile_server)
    code: int | None = None
    try:
        async with socket(hostile_server, init=True) as ws:
            await ws.send(subscribe("huge", "{ health { ok } }" + " " * (20 * MB)))
            code = await close_code(ws, 60)
    except ConnectionClosed as closed:
        # The server may close while the 20 MB frame is still going out: the send (or the
        # client's own closing handshake) then reports the close frame it received.
        code = closed.rcvd.code if closed.rcvd is not None else code
    assert code == 1009
    assert rss(hostile_server) - before < 100 * MB


async def test_a_websocket_message_over_the_body_cap_closes_with_1009(
    hostile_server: HostileServer,
) -> None:
    """Regression: uvicorn's default let a single message hold 16 MiB; the cap is 1 MiB."""
    async with socket(hostile_server, init=True) as ws:
        await ws.send(subscribe("big", "{ health { ok } }" + " " * (MB - 1024)))  # just under
        first = json.loads(await asyncio.wait_for(ws.recv(), 15))
        assert first["type"] in {"next", "error"}, first  # answered, not closed
    code: int | None = None
    try:
        async with socket(hostile_server, init=True) as ws:
            await ws.send(subscribe("bigger", "{ health { ok } }" + " " * (MB + 1024)))
            code = await close_code(ws, 30)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else code
    assert code == 1009


@pytest.mark.parametrize(
    "email", ["a\x00b@example.com", "\ud800@example.com"], ids=["nul", "surrogate"]
)
async def test_a_token_email_postgres_cannot_store_is_ignored_not_a_500(
    hostile_server: HostileServer, make_token: Callable[..., str], email: str
) -> None:
    """Regression: the user upsert failed outside execution (HTTP 500) for such an email claim."""
    response = await post(
        hostile_server, {"query": "{ me { email } }"}, token=make_token(email=email)
    )
    assert response.status_code == 200, response.text
    assert assert_clean_response(response)["data"] == {"me": {"email": None}}
