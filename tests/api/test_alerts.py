"""The alerts API: alerts pages and filters, alert(id) and its details, markAlertOpened,
markAllAlertsOpened, alertStats, recentAlertsCount, Stock.myAlerts; users are isolated."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from services.market.signals.registry import KINDS
from services.pagination import encode_cursor, encode_seq_cursor
from tests.fixtures.api import ApiData, StatementLog, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

PAGE = """
query($first: Int, $after: String, $type: AlertType) {
  alerts(first: $first, after: $after, type: $type) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id type asOf headline newState previousState createdAt openedAt
                          stock { ticker name } } } } }
"""

OPEN = "mutation($id: ID!) { markAlertOpened(id: $id) { id openedAt stock { ticker } } }"


async def _viewer_with_row(gql: GraphQLClient, new_viewer: Callable[..., Viewer]) -> Viewer:
    viewer = new_viewer()
    assert "errors" not in await gql("{ me { id } }", token=viewer.token)
    return viewer


async def _all_pages(
    gql: GraphQLClient, token: str, first: int, **variables: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        body = await gql(PAGE, {"first": first, "after": after, **variables}, token=token)
        assert "errors" not in body, body
        page = body["data"]["alerts"]
        pages.append(page)
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return ids, pages
        after = page["pageInfo"]["endCursor"]


async def test_alerts_newest_first_in_pages_with_total_count(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    entity = await api_data.entity("AAPL", "Apple Inc.", has_price_data=True)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    committed = []
    for n in range(7):
        # sent_at disagrees with commit order (and three share one): the list follows commit
        # order, the order alertCreated(after:) replays in.
        sent = base if n in (2, 3, 4) else base - dt.timedelta(days=n)
        alert_id = await api_data.alert(
            viewer.id, entity, as_of=dt.date(2025, 1, 1) + dt.timedelta(days=n), sent_at=sent
        )
        committed.append(alert_id)

    ids, pages = await _all_pages(gql, viewer.token, 3)

    assert ids == [str(i) for i in reversed(committed)]
    assert [len(p["edges"]) for p in pages] == [3, 3, 1]
    assert all(p["totalCount"] == 7 for p in pages)
    first = pages[0]["edges"][0]
    assert first["cursor"] == pages[0]["edges"][0]["cursor"] and first["node"]["stock"] == {
        "ticker": "AAPL",
        "name": "Apple Inc.",
    }
    assert first["node"]["type"] == "TREND_BREAK"
    assert first["node"]["createdAt"].endswith("+00:00")
    assert pages[-1]["pageInfo"]["endCursor"] == pages[-1]["edges"][-1]["cursor"]


async def test_pages_have_no_gaps_or_duplicates_while_alerts_arrive(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    entity = await api_data.entity("MSFT")
    old = [
        await api_data.alert(viewer.id, entity, as_of=dt.date(2024, 1, n + 1)) for n in range(10)
    ]
    seen: list[str] = []
    after = None
    day = 1
    while True:
        body = await gql(PAGE, {"first": 4, "after": after}, token=viewer.token)
        page = body["data"]["alerts"]
        seen += [e["node"]["id"] for e in page["edges"]]
        # A new alert arrives between page fetches; it is newer than every cursor.
        await api_data.alert(viewer.id, entity, as_of=dt.date(2025, 6, day))
        day += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [str(i) for i in reversed(old)]


async def test_type_filter_and_empty_list(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    empty = await gql(PAGE, {}, token=viewer.token)
    assert empty["data"]["alerts"] == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }
    entity = await api_data.entity("TSLA")
    await api_data.alert(viewer.id, entity, alert_type="trend_break")
    valuation = await api_data.alert(
        viewer.id, entity, alert_type="valuation_regime_change", new_state="CHEAP"
    )
    body = await gql(PAGE, {"type": "VALUATION_REGIME_CHANGE"}, token=viewer.token)
    page = body["data"]["alerts"]
    assert page["totalCount"] == 1
    assert [e["node"]["id"] for e in page["edges"]] == [str(valuation)]
    assert page["edges"][0]["node"]["type"] == "VALUATION_REGIME_CHANGE"


async def test_alert_arguments_are_validated(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    # A well-formed cursor that matches no alert of this user: an empty page, not an error.
    foreign = encode_seq_cursor(12_345)
    # Cursors of the old (sent_at, id) order are refused clearly rather than misread.
    old_order = encode_cursor(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), uuid.uuid4())
    for variables in (
        {"after": old_order},
        {"first": 0},
        {"first": 101},
        {"first": -5},
        {"after": "not-a-cursor"},
        {"after": "djF8bm9wZXxub3Bl"},  # base64 of "v1|nope|nope"
        {"after": "djJ8bm9wZQ"},  # "v2|nope"
        {"after": "djJ8LTU"},  # "v2|-5"
        {"after": "djJ8OTk5OTk5OTk5OTk5OTk5OTk5OTk"},  # "v2|" and a number past bigint
        {"after": ""},
        {"type": "TREND"},
        {"first": "ten"},
    ):
        body = await gql(PAGE, variables, token=viewer.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)
        assert body.get("data") is None or body["data"].get("alerts") is None
    ok = await gql(PAGE, {"first": 100, "after": foreign}, token=viewer.token)
    assert "errors" not in ok and ok["data"]["alerts"]["edges"] == []


async def test_mark_alert_opened_sets_the_first_time_only(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    entity = await api_data.entity("NFLX")
    alert_id = await api_data.alert(viewer.id, entity)

    first = await gql(OPEN, {"id": str(alert_id)}, token=viewer.token)
    opened_at = first["data"]["markAlertOpened"]["openedAt"]
    assert opened_at is not None
    assert first["data"]["markAlertOpened"]["stock"] == {"ticker": "NFLX"}
    second = await gql(OPEN, {"id": str(alert_id)}, token=viewer.token)
    assert second["data"]["markAlertOpened"]["openedAt"] == opened_at
    stored = await pool.fetchval("SELECT opened_at FROM alert_history WHERE id = $1", alert_id)
    assert stored.isoformat() == opened_at


async def test_mark_alert_opened_never_reveals_other_users_alerts(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    alice = await _viewer_with_row(gql, new_viewer)
    bob = await _viewer_with_row(gql, new_viewer)
    entity = await api_data.entity("AMZN")
    alices = await api_data.alert(alice.id, entity)

    for raw in (str(alices), str(uuid.uuid4()), "not-a-uuid", "", "1; DROP TABLE users"):
        body = await gql(OPEN, {"id": raw}, token=bob.token)
        assert error_codes(body) == ["NOT_FOUND"], raw
        assert body["errors"][0]["message"] == "alert not found"
    assert await pool.fetchval("SELECT opened_at FROM alert_history") is None
    bobs_list = await gql(PAGE, {}, token=bob.token)
    assert bobs_list["data"]["alerts"]["totalCount"] == 0
    alices_list = await gql(PAGE, {}, token=alice.token)
    assert [e["node"]["id"] for e in alices_list["data"]["alerts"]["edges"]] == [str(alices)]


async def test_alert_stats_and_recent_count(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    other = await api_data.user()
    entity = await api_data.entity("GOOG")
    now = dt.datetime.now(dt.UTC)
    await api_data.alert(viewer.id, entity, as_of=dt.date(2025, 1, 1), opened_at=now)
    await api_data.alert(viewer.id, entity, as_of=dt.date(2025, 1, 2))
    await api_data.alert(
        viewer.id,
        entity,
        alert_type="fundamental_inflection",
        sent_at=now - dt.timedelta(days=20),
        opened_at=now,
    )
    await api_data.alert(
        viewer.id,
        entity,
        alert_type="valuation_regime_change",
        sent_at=now - dt.timedelta(days=400),
    )
    await api_data.alert(other, entity, as_of=dt.date(2025, 1, 3))

    query = """{ alertStats { total opened openRate byType { type count } }
                 week: recentAlertsCount month: recentAlertsCount(days: 30)
                 year: recentAlertsCount(days: 365)
                 me { alertStats { total } alerts(first: 1) { totalCount } } }"""
    body = await gql(query, token=viewer.token)

    assert "errors" not in body, body
    data = body["data"]
    assert data["alertStats"] == {
        "total": 4,
        "opened": 2,
        "openRate": 0.5,
        "byType": [
            {"type": "VALUATION_REGIME_CHANGE", "count": 1},
            {"type": "TREND_BREAK", "count": 2},
            {"type": "FUNDAMENTAL_INFLECTION", "count": 1},
            # Every kind is listed; those registered later have none here.
            *({"type": kind.graphql_name, "count": 0} for kind in KINDS[3:]),
        ],
    }
    assert (data["week"], data["month"], data["year"]) == (2, 3, 3)
    assert data["me"] == {"alertStats": {"total": 4}, "alerts": {"totalCount": 4}}


async def test_alert_stats_without_alerts_and_day_limits(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    body = await gql("{ alertStats { total opened openRate } }", token=viewer.token)
    assert body["data"]["alertStats"] == {"total": 0, "opened": 0, "openRate": 0.0}
    for days in (0, 366, -1):
        body = await gql(f"{{ recentAlertsCount(days: {days}) }}", token=viewer.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], days


async def test_alert_stocks_load_counts_signals_and_jobs_in_one_batch_each(
    gql: GraphQLClient,
    api_data: ApiData,
    new_viewer: Callable[..., Viewer],
    statement_log: StatementLog,
) -> None:
    viewer = await _viewer_with_row(gql, new_viewer)
    other = await api_data.user()
    for n in range(10):
        entity = await api_data.entity(f"E{n}")
        await api_data.watch(other, entity)
        await api_data.signal(entity, dt.date(2025, 1, 2), close=float(n))
        await api_data.job(f"E{n}", "pending", priority=n + 1)
        for day in (1, 2):
            await api_data.alert(viewer.id, entity, as_of=dt.date(2025, 1, day))
    query = """{ alerts(first: 20) { edges { node { stock {
        ticker watcherCount signal { close } backfill { priority } } } } } }"""
    await gql(query, token=viewer.token)
    statement_log.clear()

    # Named differently, so the response cache misses and the query really executes.
    body = await gql("query Measured " + query, token=viewer.token)

    stocks = [e["node"]["stock"] for e in body["data"]["alerts"]["edges"]]
    assert len(stocks) == 20
    for stock in stocks:
        n = int(stock["ticker"][1:])
        assert stock["watcherCount"] == 1
        assert stock["signal"] == {"close": float(n)}
        assert stock["backfill"] == {"priority": n + 1}
    # The cache's version read, the page, one batch per loader and the cache's read of the
    # scopes met while executing (the stocks shown), whatever the page size (the viewer's row
    # was ensured by the first request, so this one does not read it).
    assert statement_log.count == 6, statement_log.queries
    assert "cache_versions" in statement_log.queries[0]
    assert "pg_visible_in_snapshot" in statement_log.queries[-1]


DETAILS = """details { metric multipleBefore multipleNow percentileBefore percentileNow close
                       sma200 epsTtmBefore epsTtmNow }"""


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
    ann, bob = await _viewer_with_row(gql, new_viewer), await _viewer_with_row(gql, new_viewer)
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
    ann = await _viewer_with_row(gql, new_viewer)
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
    ann, bob = await _viewer_with_row(gql, new_viewer), await _viewer_with_row(gql, new_viewer)
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
