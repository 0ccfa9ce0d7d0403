"""me (user upsert from the token), completeOnboarding, updateSettings."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from tests.fixtures.api import ApiData, StatementLog, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

ME = "{ me { id email investingStyle onboardedAt alertsEnabled alertTypes } }"
ONBOARD = """mutation($style: InvestingStyle!, $tickers: [String!]!) {
    completeOnboarding(investingStyle: $style, tickers: $tickers) {
        id investingStyle onboardedAt watchlist { count items { stock { ticker } } } } }"""
SETTINGS = """mutation($input: UpdateSettingsInput!) {
    updateSettings(input: $input) { investingStyle alertsEnabled alertTypes } }"""


async def test_me_creates_the_user_from_the_token_once(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
    statement_log: StatementLog,
) -> None:
    viewer = new_viewer("first@example.com")
    body = await gql(ME, token=viewer.token)
    assert body["data"]["me"] == {
        "id": str(viewer.id),
        "email": "first@example.com",
        "investingStyle": None,
        "onboardedAt": None,
        "alertsEnabled": True,
        "alertTypes": ["VALUATION_REGIME_CHANGE", "TREND_BREAK", "FUNDAMENTAL_INFLECTION"],
    }
    statement_log.clear()
    # Many viewer fields in one request: the user row is read once.
    await gql(
        "{ me { id } alertStats { total } recentAlertsCount watchlist { count } }",
        token=viewer.token,
    )
    user_reads = [q for q in statement_log.queries if "FROM users WHERE id" in q]
    assert len(user_reads) == 1, statement_log.queries
    assert await pool.fetchval("SELECT count(*) FROM users") == 1


async def test_email_claim_updates_and_a_taken_email_does_not_lock_out(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    make_token: Callable[..., str],
    new_viewer: Callable[..., Viewer],
) -> None:
    viewer = new_viewer("old@example.com")
    await gql(ME, token=viewer.token)
    renamed = await gql(ME, token=make_token(sub=viewer.id, email="new@example.com"))
    assert renamed["data"]["me"]["email"] == "new@example.com"
    no_email = await gql(ME, token=make_token(sub=viewer.id))
    assert no_email["data"]["me"]["email"] == "new@example.com"
    other = new_viewer("new@example.com")
    body = await gql(ME, token=other.token)
    assert body["data"]["me"] == {**body["data"]["me"], "id": str(other.id), "email": None}
    assert await pool.fetchval("SELECT count(*) FROM users") == 2


async def test_an_email_claim_that_is_not_one_valid_address_is_stored_as_no_email(
    gql: GraphQLClient, pool: asyncpg.Pool, make_token: Callable[..., str]
) -> None:
    # A line break would add headers to every digest, a comma a second recipient.
    for claim in (
        "c@example.com\r\nBcc: spy@evil.test",
        "c@example.com, spy@evil.test",
        "c@localhost",
        "c@exa mple.com",
        "not an address",
    ):
        viewer_id = uuid.uuid4()
        body = await gql(ME, token=make_token(sub=viewer_id, email=claim))
        assert body["data"]["me"]["email"] is None, claim
        assert await pool.fetchval("SELECT email FROM users WHERE id = $1", viewer_id) is None
    kept = uuid.uuid4()
    body = await gql(ME, token=make_token(sub=kept, email=" Ann@Example.COM "))
    assert body["data"]["me"]["email"] == "Ann@example.com"


async def test_complete_onboarding_adds_tickers_in_one_go_and_is_idempotent(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await api_data.entity("AAPL", "Apple Inc.", has_price_data=True)
    body = await gql(
        ONBOARD,
        {"style": "VALUE", "tickers": ["aapl", "msft", " AAPL ", "brk.b"]},
        token=viewer.token,
    )
    assert "errors" not in body, body
    user = body["data"]["completeOnboarding"]
    assert user["investingStyle"] == "VALUE" and user["onboardedAt"]
    assert user["watchlist"]["count"] == 3
    assert sorted(i["stock"]["ticker"] for i in user["watchlist"]["items"]) == [
        "AAPL",
        "BRK.B",
        "MSFT",
    ]
    jobs = await pool.fetch("SELECT ticker, priority FROM backfill_queue ORDER BY ticker")
    assert [(j["ticker"], j["priority"]) for j in jobs] == [("BRK.B", 1), ("MSFT", 1)]
    assert await pool.fetchval("SELECT count(*) FROM watchlists WHERE user_id = $1", viewer.id) == 3

    again = await gql(ONBOARD, {"style": "GROWTH", "tickers": ["MSFT", "NVDA"]}, token=viewer.token)
    assert "errors" not in again, again
    rerun = again["data"]["completeOnboarding"]
    assert rerun["investingStyle"] == "GROWTH" and rerun["onboardedAt"] == user["onboardedAt"]
    assert rerun["watchlist"]["count"] == 4
    jobs = await pool.fetch("SELECT ticker, priority FROM backfill_queue ORDER BY ticker")
    # MSFT was already watched: no second enqueue, no priority bump.
    assert [(j["ticker"], j["priority"]) for j in jobs] == [
        ("BRK.B", 1),
        ("MSFT", 1),
        ("NVDA", 1),
    ]


async def test_complete_onboarding_rejects_bad_input_and_changes_nothing(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await gql(ME, token=viewer.token)
    cases: list[dict[str, Any]] = [
        {"style": "VALUE", "tickers": []},
        {"style": "VALUE", "tickers": ["AAPL", "NOT A TICKER"]},
        {"style": "VALUE", "tickers": [f"T{n}" for n in range(51)]},
        {"style": "value", "tickers": ["AAPL"]},
        {"style": "VALUE", "tickers": None},
    ]
    for variables in cases:
        body = await gql(ONBOARD, variables, token=viewer.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)
    await api_data.entity("KNOWN", in_symbol_universe=True)
    body = await gql(
        ONBOARD, {"style": "BLEND", "tickers": ["KNOWN", "UNKNOWN"]}, token=viewer.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 0
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 0
    user = await pool.fetchrow("SELECT investing_style, onboarded_at FROM users")
    assert user is not None and tuple(user) == (None, None)
    # 50 distinct tickers (plus duplicates) are fine.
    tickers = [f"K{n}" for n in range(50)] + ["k1", "K2"]
    await pool.execute("UPDATE entities SET in_symbol_universe = false")
    body = await gql(ONBOARD, {"style": "BLEND", "tickers": tickers}, token=viewer.token)
    assert body["data"]["completeOnboarding"]["watchlist"]["count"] == 50


async def test_update_settings_changes_only_what_is_given(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    body = await gql(SETTINGS, {"input": {"investingStyle": "GROWTH"}}, token=viewer.token)
    assert body["data"]["updateSettings"] == {
        "investingStyle": "GROWTH",
        "alertsEnabled": True,
        "alertTypes": ["VALUATION_REGIME_CHANGE", "TREND_BREAK", "FUNDAMENTAL_INFLECTION"],
    }
    body = await gql(
        SETTINGS,
        {
            "input": {
                "alertsEnabled": False,
                "alertTypes": ["TREND_BREAK", "VALUATION_REGIME_CHANGE", "TREND_BREAK"],
            }
        },
        token=viewer.token,
    )
    assert body["data"]["updateSettings"] == {
        "investingStyle": "GROWTH",
        "alertsEnabled": False,
        "alertTypes": ["VALUATION_REGIME_CHANGE", "TREND_BREAK"],
    }
    muted = await gql(SETTINGS, {"input": {"alertTypes": []}}, token=viewer.token)
    assert muted["data"]["updateSettings"]["alertTypes"] == []
    unchanged = await gql(SETTINGS, {"input": {}}, token=viewer.token)
    assert unchanged["data"]["updateSettings"]["investingStyle"] == "GROWTH"
    me = await gql(ME, token=viewer.token)
    assert me["data"]["me"]["alertsEnabled"] is False
    bad = await gql(SETTINGS, {"input": {"alertTypes": ["EVERYTHING"]}}, token=viewer.token)
    assert error_codes(bad) == ["BAD_USER_INPUT"]


async def test_each_user_sees_and_changes_only_their_own_settings(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    alice, bob = new_viewer("alice@example.com"), new_viewer("bob@example.com")
    await gql(ONBOARD, {"style": "VALUE", "tickers": ["AAPL"]}, token=alice.token)
    await gql(
        SETTINGS, {"input": {"investingStyle": "GROWTH", "alertsEnabled": False}}, token=bob.token
    )
    alice_me = (await gql(ME, token=alice.token))["data"]["me"]
    bob_me = (await gql(ME, token=bob.token))["data"]["me"]
    assert (alice_me["email"], alice_me["investingStyle"], alice_me["alertsEnabled"]) == (
        "alice@example.com",
        "VALUE",
        True,
    )
    assert (bob_me["email"], bob_me["investingStyle"], bob_me["onboardedAt"]) == (
        "bob@example.com",
        "GROWTH",
        None,
    )
