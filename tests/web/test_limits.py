"""Limits and abuse: query cost, cost budgets, WebSocket expiry and caps, APQ bytes, log text."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from graphql import parse
from starlette.applications import Starlette
from strawberry.schema.exceptions import CannotGetOperationTypeError
from websockets.exceptions import ConnectionClosed

from services.cost_budget import CostBudgets
from services.logs import LOG_TEXT_MAX_CHARS, TextFormatter, escape_log_text, log_context
from services.market.signals.registry import KINDS
from services.settings import Settings
from tests.fixtures.ws import WsClient, live_server
from web.app import create_app
from web.graphql_app import build_schema
from web.rate_limit import QueryLimits

GRAPHQL_RESPONSE = "application/graphql-response+json"
# The reported attack: 1 KB asking for ten years of prices of 50 stocks, ten times.
COSTLY = (
    "{ "
    + " ".join(
        f'a{i}: searchStocks(query: "demo", limit: 50) '
        '{ prices(from: "2015-07-01", to: "2025-06-30") { date close } }'
        for i in range(10)
    )
    + " }"
)
POPULAR = "{ popularStocks { ticker } }"
MakeToken = Callable[..., str]


def cost_of(query: str, variables: dict[str, object] | None = None) -> int:
    limits = QueryLimits(Settings())
    build_schema(Settings(), limits)
    return limits.cost(parse(query), None, variables or {})


def test_cost_counts_lists_by_size_and_prices_by_trading_days() -> None:
    assert cost_of(POPULAR) == 10  # default limit 10, one object each
    assert cost_of('{ searchStocks(query: "a", limit: 3) { ticker } }') == 3
    one_year = '{ stock(ticker: "A") { prices(from: "2023-01-01", to: "2023-12-31") { date } } }'
    assert cost_of(one_year) == 1 + 252
    by_variable = 'query($n: Int) { searchStocks(query: "a", limit: $n) { ticker } }'
    assert cost_of(by_variable, {"n": 7}) == 7
    # A connection's `first` sizes its edges.
    assert cost_of("{ alerts(first: 5) { edges { node { id } } } }") == 1 + 5 * 2
    assert cost_of(COSTLY) > 1_000_000


def test_per_kind_lists_cost_one_element_per_signal_kind() -> None:
    """Regression: a full watchlist with the generic signal lists cost 20,301 (refused)."""
    watchlist = (
        "{ watchlist { items { signals { kind state arrow } "
        "stock { ticker signal { states { kind state arrow } } } } } }"
    )
    kinds = len(KINDS)
    assert cost_of(watchlist) == 1 + 100 * (1 + kinds + 1 + 1 + kinds)


def test_signal_history_costs_its_window_in_trading_days_once() -> None:
    """Regression: an object-typed windowed field was costed as one object (almost free)."""
    ten_years = (
        '{ stock(ticker: "A") { signalHistory(from: "2014-01-01", to: "2023-12-31") '
        "{ tradingDays transitions { asOf } } } }"
    )
    days = cost_of(ten_years) - 1 - 1 - 100  # the stock, the history, its transitions list
    assert 2_500 <= days <= 2_530  # 252 a year, the selection not multiplied by the days
    window = 'signalHistory(from: "2009-01-01", to: "2023-12-31") { tradingDays }'
    fifteen = f'{{ stock(ticker: "A") {{ {window} }} }}'
    aliased = "{ " + " ".join(f'h{i}: stock(ticker: "A") {{ {window} }}' for i in range(6)) + " }"
    assert cost_of(fifteen) > 3_700
    assert cost_of(aliased) > 20_000  # six 15-year histories are over the default limit


async def test_a_query_over_the_cost_limit_is_refused_before_execution(
    client: httpx.AsyncClient,
) -> None:
    modern = await client.post(
        "/graphql", json={"query": COSTLY}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert modern.status_code == 400
    assert modern.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = modern.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["limit"] == 20_000
    assert error["extensions"]["cost"] == body["extensions"]["cost"] > 20_000
    legacy = (await client.post("/graphql", json={"query": COSTLY})).json()
    assert legacy["data"] is None
    assert legacy["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_every_response_reports_its_cost_cached_or_not(client: httpx.AsyncClient) -> None:
    first = await client.post("/graphql", json={"query": POPULAR})
    again = await client.post("/graphql", json={"query": POPULAR})
    assert again.headers["cache-status"].endswith("hit")
    assert first.json()["extensions"] == again.json()["extensions"] == {"cost": 10}
    assert first.headers["etag"] == again.headers["etag"]
    not_modified = await client.post(
        "/graphql", json={"query": POPULAR}, headers={"if-none-match": first.headers["etag"]}
    )
    assert not_modified.status_code == 304


async def test_responses_refused_before_the_schema_report_a_cost_of_zero(
    client: httpx.AsyncClient,
) -> None:
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    refused = [
        await client.post("/graphql", json={"extensions": persisted}),  # APQ miss
        await client.post(
            "/graphql", content=b"{not json", headers={"content-type": "application/json"}
        ),
        await client.get(
            "/graphql", params={"query": 'mutation { addStock(ticker: "A") { addedAt } }'}
        ),
        await client.post("/graphql", json={"variables": {}}),  # no query
    ]
    assert [response.status_code for response in refused] == [200, 400, 405, 400]
    for response in refused:
        body = response.json()
        assert body["extensions"] == {"cost": 0} and body["errors"], body
        assert body.get("data") is None


async def test_a_cache_hit_charges_the_stored_cost_without_costing_the_document_again(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    costed: list[int] = []
    cost = QueryLimits.cost

    def counting(self: QueryLimits, *args: object) -> int:
        costed.append(cost(self, *args))  # type: ignore[arg-type]
        return costed[-1]

    monkeypatch.setattr(QueryLimits, "cost", counting)
    first = await client.post("/graphql", json={"query": POPULAR})
    hits = [await client.post("/graphql", json={"query": POPULAR}) for _ in range(3)]
    assert all(hit.headers["cache-status"].endswith("; hit") for hit in hits)
    assert costed == [10]  # the miss only
    assert all(hit.json()["extensions"] == first.json()["extensions"] for hit in hits)


@pytest.fixture
def tight_settings(settings: Settings) -> Settings:
    # 40 a minute for users, so 10 (one popularStocks) for anonymous clients.
    return dataclasses.replace(settings, graphql_cost_per_minute=40)


@pytest.fixture
async def tight_client(
    tight_settings: Settings, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(tight_settings, database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_a_client_over_its_cost_budget_gets_429_with_retry_after(
    tight_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    assert "errors" not in (await tight_client.post("/graphql", json={"query": POPULAR})).json()
    refused = await tight_client.post("/graphql", json={"query": POPULAR})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # A signed-in user has a budget of their own (four times the anonymous one).
    headers = {"authorization": f"Bearer {make_token()}"}
    for _ in range(4):
        ok = await tight_client.post("/graphql", json={"query": POPULAR}, headers=headers)
        assert ok.status_code == 200, ok.text
    over = await tight_client.post("/graphql", json={"query": POPULAR}, headers=headers)
    assert over.status_code == 429


def test_cost_budgets_stay_bounded_under_a_flood_of_clients() -> None:
    now = [0.0]
    budgets = CostBudgets(600, max_clients=100, clock=lambda: now[0])
    for i in range(10_000):
        assert budgets.charge(f"10.0.{i // 256}.{i % 256}", 1) is None
    assert len(budgets) <= 100
    assert budgets.charge("a", 600) is None
    assert budgets.charge("a", 10) == 1  # 10 a second come back
    now[0] += 1
    assert budgets.charge("a", 10) is None


async def test_production_validation_errors_suggest_no_field_names(
    settings: Settings, database_url: str
) -> None:
    production = dataclasses.replace(settings, graphql_introspection=False)
    application = create_app(production, database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = (
                await http.post("/graphql", json={"query": "{ popularStock { tickr } }"})
            ).json()
    (error,) = body["errors"]
    assert "Did you mean" not in error["message"] and "popularStocks" not in error["message"]


def test_client_text_in_logs_is_escaped_and_capped() -> None:
    assert escape_log_text("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert len(escape_log_text("x" * 10_000)) <= LOG_TEXT_MAX_CHARS + 20


async def test_operation_names_are_escaped_in_log_context(settings: Settings) -> None:
    schema = build_schema(settings)
    with log_context() as fields:
        await schema.execute(
            "query Fake { __typename } query Other { __typename }",
            operation_name="Fake",
        )
        assert fields["operation"] == "Fake"
    with log_context() as fields:
        with contextlib.suppress(CannotGetOperationTypeError):  # no such operation
            await schema.execute("{ __typename }", operation_name="x\nINFO forged")
        line = TextFormatter().format(
            logging.LogRecord("t", logging.INFO, __file__, 1, "request", None, None)
        )
        assert "operation=x\\nINFO forged" in line and "\n" not in line


# -- WebSockets --------------------------------------------------------------------------


@pytest.fixture
async def ws_address(settings: Settings, database_url: str) -> AsyncIterator[str]:
    limited = dataclasses.replace(
        settings, ws_max_connections_per_user=2, ws_max_subscriptions_per_user=2
    )
    async with live_server(create_app(limited, database_url=database_url)) as address:
        yield address


async def test_an_expired_token_ends_the_whole_connection(
    ws_address: str, make_token: MakeToken
) -> None:
    async with WsClient.connect(f"ws://{ws_address}/graphql") as client:
        assert (await client.init(make_token(ttl_seconds=2)))["type"] == "connection_ack"
        await asyncio.sleep(2.5)
        with pytest.raises(ConnectionClosed) as closed:
            await client.send(
                {"id": "m", "type": "subscribe", "payload": {"query": "{ me { id } }"}}
            )
            await client.receive(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_sockets_and_subscriptions_per_user_are_capped(
    ws_address: str, make_token: MakeToken
) -> None:
    user = uuid.uuid4()
    url = f"ws://{ws_address}/graphql"
    async with WsClient.connect(url) as one, WsClient.connect(url) as two:
        assert (await one.init(make_token(user)))["type"] == "connection_ack"
        assert (await two.init(make_token(user)))["type"] == "connection_ack"
        async with WsClient.connect(url) as three:
            await three.send(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {make_token(user)}"},
                }
            )
            with pytest.raises(ConnectionClosed) as closed:
                await three.receive(5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        await one.subscribe("s1")
        await two.subscribe("s2")
        await asyncio.sleep(0.5)
        await one.subscribe("s3")
        message = await one.receive()
        assert message["id"] == "s3" and message["type"] in ("error", "next")
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["RATE_LIMITED"]


async def test_operations_over_a_websocket_are_charged_like_http_ones(
    tight_settings: Settings, database_url: str, make_token: MakeToken
) -> None:
    app: Starlette = create_app(tight_settings, database_url=database_url)
    async with live_server(app) as address:
        async with WsClient.connect(f"ws://{address}/graphql") as client:
            await client.init(make_token())
            for _ in range(3):
                await client.send({"id": "q", "type": "subscribe", "payload": {"query": POPULAR}})
                message = await client.receive()
                await client.receive()  # complete
            assert message["type"] == "next"
            await client.send({"id": "q", "type": "subscribe", "payload": {"query": POPULAR}})
            await client.send({"id": "r", "type": "subscribe", "payload": {"query": POPULAR}})
            refused = await client.receive()
            payload = refused["payload"]
            errors = payload if isinstance(payload, list) else payload.get("errors")
            assert [e["extensions"]["code"] for e in errors] == ["RATE_LIMITED"]
