"""alert(id), alerts(ticker, unread), markAllAlertsOpened, Alert.details, Stock.myAlerts."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from tests.fixtures.api import ApiData, StatementLog, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

DETAILS = """details { metric multipleBefore multipleNow percentileBefore percentileNow close
                       sma200 epsTtmBefore epsTtmNow }"""


async def signed_up(gql: GraphQLClient, new_viewer: Callable[..., Viewer]) -> Viewer:
    viewer: Viewer = new_viewer()
    assert "errors" not in await gql("{ me { id } }", token=viewer.token)
    return viewer


async def alert_with_snapshot(
    pool: asyncpg.Pool, api_data: ApiData, user: uuid.UUID, entity: uuid.UUID, kind: str
) -> uuid.UUID:
    alert_id = await api_data.alert(user, entity, alert_type=kind)
    snapshot = {
        "valuation_metric": "EV/EBITDA",
        "valuation_multiple": 5.0,
        "valuation_percentile": 3.2,
        "close": 20.0,
        "sma200": 22.5,
        "eps_ttm": 1.1,
        "previous": {"valuation_multiple": 14.6, "valuation_percentile": 55.0, "eps_ttm": 1.4},
    }
    await pool.execute(
        "UPDATE alert_history SET data_snapshot = $2 WHERE id = $1", alert_id, snapshot
    )
    return alert_id


async def test_alert_by_id_with_details_and_nobody_elses(
    gql: GraphQLClient, api_data: ApiData, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    ann, bob = await signed_up(gql, new_viewer), await signed_up(gql, new_viewer)
    entity = await api_data.entity("ACME")
    ids = {
        kind: await alert_with_snapshot(pool, api_data, ann.id, entity, kind)
        for kind in ("valuation_regime_change", "trend_break", "fundamental_inflection")
    }
    query = f"query($id: ID!) {{ alert(id: $id) {{ id type stock {{ ticker }} {DETAILS} }} }}"
    valuation = await gql(query, {"id": str(ids["valuation_regime_change"])}, token=ann.token)
    assert valuation["data"]["alert"]["details"] == {
        "metric": "EV/EBITDA",
        "multipleBefore": 14.6,
        "multipleNow": 5.0,
        "percentileBefore": 55.0,
        "percentileNow": 3.2,
        "close": 20.0,
        "sma200": None,
        "epsTtmBefore": None,
        "epsTtmNow": None,
    }
    trend = (await gql(query, {"id": str(ids["trend_break"])}, token=ann.token))["data"]
    assert trend["alert"]["details"]["sma200"] == 22.5
    assert trend["alert"]["details"]["metric"] is None
    eps = (await gql(query, {"id": str(ids["fundamental_inflection"])}, token=ann.token))["data"]
    assert (eps["alert"]["details"]["epsTtmBefore"], eps["alert"]["details"]["epsTtmNow"]) == (
        1.4,
        1.1,
    )
    for raw in (str(ids["trend_break"]), "not-an-id", str(uuid.uuid4())):
        body = await gql(query, {"id": raw}, token=bob.token)
        assert (
            body["data"] == {"alert": None} and "errors" not in body
        )  # never reveals that another user's exists
    assert error_codes(await gql(query, {"id": str(ids["trend_break"])})) == ["UNAUTHENTICATED"]


async def test_alerts_filter_by_ticker_and_unread_and_mark_all_opened(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    ann = await signed_up(gql, new_viewer)
    acme, beta = await api_data.entity("ACME"), await api_data.entity("BETA")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for n in range(3):
        await api_data.alert(
            ann.id, acme, as_of=dt.date(2025, 1, n + 1), sent_at=start + dt.timedelta(days=n)
        )
    await api_data.alert(
        ann.id, beta, sent_at=start + dt.timedelta(days=10), opened_at=start + dt.timedelta(days=11)
    )
    page = """query($ticker: String, $unread: Boolean) {
      alerts(ticker: $ticker, unread: $unread) { totalCount edges { node { stock { ticker }
        openedAt } } } }"""

    async def tickers(**variables: Any) -> tuple[int, list[str]]:
        body = await gql(page, variables, token=ann.token)
        connection = body["data"]["alerts"]
        return connection["totalCount"], [e["node"]["stock"]["ticker"] for e in connection["edges"]]

    assert await tickers(ticker=" acme ") == (3, ["ACME"] * 3)
    assert await tickers(unread=True) == (3, ["ACME"] * 3)
    assert await tickers(unread=False) == (1, ["BETA"])
    assert await tickers(ticker="BETA", unread=True) == (0, [])
    bad = await gql(page, {"ticker": "no such ticker!"}, token=ann.token)
    assert error_codes(bad) == ["BAD_USER_INPUT"]

    mark = "mutation($before: DateTime) { markAllAlertsOpened(before: $before) }"
    cutoff = (start + dt.timedelta(days=1)).isoformat()
    assert (await gql(mark, {"before": cutoff}, token=ann.token))["data"] == {
        "markAllAlertsOpened": 2
    }
    assert await tickers(unread=True) == (1, ["ACME"])
    assert (await gql(mark, token=ann.token))["data"] == {"markAllAlertsOpened": 1}
    assert (await gql(mark, token=ann.token))["data"] == {"markAllAlertsOpened": 0}
    assert await tickers(unread=True) == (0, [])
    assert error_codes(await gql(mark)) == ["UNAUTHENTICATED"]


async def test_stock_my_alerts_is_the_viewers_own_and_batched(
    gql: GraphQLClient,
    api_data: ApiData,
    new_viewer: Callable[..., Viewer],
    statement_log: StatementLog,
) -> None:
    ann, bob = await signed_up(gql, new_viewer), await signed_up(gql, new_viewer)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for n, ticker in enumerate(("AAA", "AAB", "AAC")):
        entity = await api_data.entity(ticker, f"Company {ticker}")
        await api_data.watch(ann.id, entity)
        for day in range(3):
            await api_data.alert(
                ann.id,
                entity,
                as_of=dt.date(2025, 1, day + 1),
                sent_at=start + dt.timedelta(days=day, hours=n),
            )
    query = '{ searchStocks(query: "AA") { ticker myAlerts(first: 2) { asOf } } }'
    statement_log.clear()
    mine = (await gql(query, token=ann.token))["data"]["searchStocks"]
    assert [s["ticker"] for s in mine] == ["AAA", "AAB", "AAC"]
    assert all(s["myAlerts"] == [{"asOf": "2025-01-03"}, {"asOf": "2025-01-02"}] for s in mine)
    alert_statements = [q for q in statement_log.queries if "a.entity_id = wanted.id" in q]
    assert len(alert_statements) == 1  # one batch for every stock on the page
    # Another user, or nobody, sees none of them, also from the shared response cache.
    for token in (bob.token, None):
        others = (await gql(query, token=token))["data"]["searchStocks"]
        assert all(s["myAlerts"] == [] for s in others)
    again = (await gql(query, token=ann.token))["data"]["searchStocks"]
    assert again == mine
