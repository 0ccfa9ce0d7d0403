"""Error codes over HTTP: auth, GraphQL validation, masked unexpected errors; status 200."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.fixtures.api import ApiData, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

PROTECTED = [
    "{ me { id } }",
    "{ watchlist { count } }",
    "{ alerts { totalCount } }",
    "{ alertStats { total } }",
    "{ recentAlertsCount }",
    'mutation { completeOnboarding(investingStyle: VALUE, tickers: ["AAPL"]) { id } }',
    "mutation { updateSettings(input: {alertsEnabled: false}) { id } }",
    'mutation { addStock(ticker: "AAPL") { addedAt } }',
    'mutation { removeStock(ticker: "AAPL") }',
    'mutation { setStockAlerts(ticker: "AAPL", enabled: false) { addedAt } }',
    f'mutation {{ markAlertOpened(id: "{uuid.uuid4()}") {{ id }} }}',
]


@pytest.mark.parametrize("query", PROTECTED)
async def test_protected_fields_need_a_valid_token(
    query: str,
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    make_token: Callable[..., str],
) -> None:
    expired = make_token(ttl_seconds=-120)
    forged = make_token()[:-4] + "abcd"
    wrong_audience = make_token(audience="someone-else")
    for token in (None, "not-a-jwt", expired, forged, wrong_audience):
        body = await gql(query, token=token)
        assert error_codes(body) == ["UNAUTHENTICATED"], (token, body)
        assert body["data"] is None
    assert await pool.fetchval("SELECT count(*) FROM users") == 0
    assert await pool.fetchval("SELECT count(*) FROM entities") == 0


async def test_non_uuid_subject_is_unauthenticated(
    gql: GraphQLClient, make_token: Callable[..., str]
) -> None:
    body = await gql("{ me { id } }", token=make_token(sub="user-42"))
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_public_fields_answer_without_a_token(gql: GraphQLClient, api_data: ApiData) -> None:
    await api_data.entity("AAPL", "Apple Inc.")
    body = await gql(
        """{ searchStocks(query: "aapl") { ticker } stock(ticker: "AAPL") { ticker }
             popularStocks { ticker } health { database } }"""
    )
    assert "errors" not in body, body
    assert body["data"]["searchStocks"] == [{"ticker": "AAPL"}]
    assert body["data"]["stock"] == {"ticker": "AAPL"}


async def test_a_public_field_beside_a_protected_one_still_answers(gql: GraphQLClient) -> None:
    body = await gql('{ stock(ticker: "AAPL") { ticker } me { id } }')
    assert error_codes(body) == ["UNAUTHENTICATED"]
    # `me` is non-null, so its error nulls the whole data object (GraphQL null propagation).
    assert body["data"] is None


@pytest.mark.parametrize(
    "query",
    [
        "{ nope }",
        "{ me { id",
        '{ searchStocks(query: "a", limit: "ten") { ticker } }',
        "{ alerts(type: TREND) { totalCount } }",
        '{ alerts(type: "TREND_BREAK") { totalCount } }',
        "{ searchStocks { ticker } }",
        "{ stock(ticker: 42) { ticker } }",
        '{ searchStocks(query: "a", limit: 99999999999) { ticker } }',
        'mutation { completeOnboarding(investingStyle: CHEAP, tickers: ["A"]) { id } }',
        "subscription { nothing }",
    ],
)
async def test_invalid_documents_are_bad_user_input(
    query: str, gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    body = await gql(query, token=new_viewer().token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"]


async def test_unexpected_errors_are_masked_and_logged(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    viewer = new_viewer()
    await gql("{ me { id } }", token=viewer.token)
    await pool.execute("ALTER TABLE alert_history RENAME TO alert_history_gone")
    with caplog.at_level(logging.ERROR, logger="graphql.errors"):
        body = await gql(
            "query RecentAlerts { alerts { totalCount } me { id } }", token=viewer.token
        )
    assert error_codes(body) == ["INTERNAL"]
    error = body["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["path"] == ["alerts"]
    text = json.dumps(body)
    assert "alert_history" not in text and "Traceback" not in text and "SELECT" not in text
    logged = [r for r in caplog.records if r.name == "graphql.errors"]
    assert len(logged) == 1
    assert "RecentAlerts" in logged[0].getMessage() and "alerts" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], asyncpg.UndefinedTableError)


async def test_graphql_errors_keep_http_200_on_get_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{ me { id } }"})
    assert response.status_code == 200
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]
