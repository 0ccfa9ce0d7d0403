"""watchlist, addStock, removeStock, setStockAlerts over the real HTTP app and Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg
import pytest

from tests.fixtures.api import ApiData, StatementLog, Viewer
from tests.fixtures.app import GraphQLClient, error_codes

WATCHLIST = """
{ watchlist { count items {
    addedAt alertsEnabled valuationState trendState fundamentalsState
    valuationRegime trendPosition fundamentalDirection lastAlertAt lastEvaluatedAt
    stock { ticker name dataStatus hasPriceData watcherCount
            signal { asOf close valuationRegime valuationMetric trendPosition }
            backfill { status priority retryCount } } } } }
"""

ADD = """
mutation($t: String!) { addStock(ticker: $t) {
    addedAt alertsEnabled valuationState trendState fundamentalsState
    stock { ticker dataStatus watcherCount backfill { status priority } } } }
"""


async def _me(gql: GraphQLClient, viewer: Viewer) -> None:
    body = await gql("{ me { id } }", token=viewer.token)
    assert body["data"]["me"]["id"] == str(viewer.id)


async def test_watchlist_items_show_states_arrows_signal_and_backfill(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await _me(gql, viewer)
    other = await api_data.user()
    aapl = await api_data.entity("AAPL", "Apple Inc.", has_price_data=True)
    msft = await api_data.entity("MSFT", "Microsoft", has_price_data=True)
    new = await api_data.entity("NEWCO", data_status="queued")
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    await api_data.watch(viewer.id, aapl, added_at=base)
    await api_data.watch(viewer.id, msft, added_at=base + dt.timedelta(days=1))
    await api_data.watch(viewer.id, new, added_at=base + dt.timedelta(days=2))
    await api_data.watch(other, aapl)
    evaluated = dt.datetime(2025, 2, 3, 22, 0, tzinfo=dt.UTC)
    await api_data.signal(aapl, dt.date(2025, 2, 2), valuation_regime="NORMAL")
    await api_data.signal(
        aapl,
        dt.date(2025, 2, 3),
        valuation_regime="CHEAP",
        trend_position="BELOW_200DMA",
        close=187.5,
        computed_at=evaluated,
    )
    await api_data.signal(
        msft,
        dt.date(2025, 2, 3),
        valuation_regime="EXPENSIVE",
        trend_position="ABOVE_200DMA",
        fundamental_direction="DETERIORATING",
    )
    sent = dt.datetime(2025, 2, 3, 23, 0, tzinfo=dt.UTC)
    await api_data.alert(viewer.id, aapl, sent_at=sent - dt.timedelta(days=9))
    await api_data.alert(viewer.id, aapl, alert_type="valuation_regime_change", sent_at=sent)
    await api_data.alert(other, aapl, alert_type="fundamental_inflection", sent_at=sent)
    await api_data.job("NEWCO", "failed", error="boom")
    await api_data.job("NEWCO", "pending", priority=3)

    body = await gql(WATCHLIST, token=viewer.token)

    assert "errors" not in body, body
    watchlist = body["data"]["watchlist"]
    assert watchlist["count"] == 3
    items = watchlist["items"]
    assert [i["stock"]["ticker"] for i in items] == ["NEWCO", "MSFT", "AAPL"]
    newco, msft_item, aapl_item = items
    assert aapl_item["valuationRegime"] == "CHEAP" and aapl_item["valuationState"] == "DOWN"
    assert aapl_item["trendPosition"] == "BELOW_200DMA" and aapl_item["trendState"] == "DOWN"
    assert aapl_item["fundamentalDirection"] == "IMPROVING"
    assert aapl_item["fundamentalsState"] == "UP"
    assert aapl_item["lastEvaluatedAt"] == "2025-02-03T22:00:00+00:00"
    assert aapl_item["lastAlertAt"] == "2025-02-03T23:00:00+00:00"
    assert aapl_item["addedAt"] == "2025-01-01T00:00:00+00:00"
    assert aapl_item["stock"]["watcherCount"] == 2
    assert aapl_item["stock"]["signal"] == {
        "asOf": "2025-02-03",
        "close": 187.5,
        "valuationRegime": "CHEAP",
        "valuationMetric": "EV/EBITDA",
        "trendPosition": "BELOW_200DMA",
    }
    assert aapl_item["stock"]["backfill"] is None
    assert msft_item["valuationState"] == "UP" and msft_item["trendState"] == "UP"
    assert msft_item["fundamentalsState"] == "DOWN"
    assert msft_item["lastAlertAt"] is None
    assert msft_item["stock"]["signal"]["valuationRegime"] == "EXPENSIVE"
    # No stored state and no signal: UNKNOWN and neutral arrows.
    assert newco["valuationRegime"] == "UNKNOWN" and newco["valuationState"] == "NEUTRAL"
    assert newco["trendState"] == "NEUTRAL" and newco["fundamentalsState"] == "NEUTRAL"
    assert newco["stock"]["dataStatus"] == "QUEUED"
    assert newco["stock"]["backfill"] == {"status": "PENDING", "priority": 3, "retryCount": 0}


async def test_state_falls_back_to_latest_signal_before_the_first_evaluation(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await _me(gql, viewer)
    entity = await api_data.entity("NVDA", has_price_data=True)
    await api_data.watch(viewer.id, entity)
    await api_data.signal(
        entity,
        dt.date(2025, 3, 3),
        valuation_regime="EXPENSIVE",
        trend_position="BELOW_200DMA",
        fundamental_direction="UNKNOWN",
    )
    body = await gql(WATCHLIST, token=viewer.token)
    item = body["data"]["watchlist"]["items"][0]
    assert (item["valuationRegime"], item["valuationState"]) == ("EXPENSIVE", "UP")
    assert (item["trendPosition"], item["trendState"]) == ("BELOW_200DMA", "DOWN")
    assert (item["fundamentalDirection"], item["fundamentalsState"]) == ("UNKNOWN", "NEUTRAL")


@pytest.mark.parametrize("size", [1, 50])
async def test_watchlist_costs_a_constant_number_of_statements(
    size: int,
    gql: GraphQLClient,
    api_data: ApiData,
    new_viewer: Callable[..., Viewer],
    statement_log: StatementLog,
) -> None:
    viewer = new_viewer()
    await _me(gql, viewer)
    other = await api_data.user()
    for n in range(size):
        entity = await api_data.entity(f"T{n:03d}", f"Company {n}", has_price_data=n % 2 == 0)
        await api_data.watch(viewer.id, entity)
        await api_data.watch(other, entity)
        await api_data.signal(entity, dt.date(2025, 1, 2))
        await api_data.alert(viewer.id, entity)
        if n % 2:
            await api_data.job(f"T{n:03d}", "pending")
    await gql(WATCHLIST, token=viewer.token)  # warm the connection's type cache
    statement_log.clear()

    # Named differently, so the response cache misses and the query really executes.
    body = await gql("query Measured " + WATCHLIST.strip(), token=viewer.token)

    assert "errors" not in body, body
    items = body["data"]["watchlist"]["items"]
    assert len(items) == size
    assert all(i["stock"]["watcherCount"] == 2 for i in items)
    assert all(i["stock"]["signal"]["asOf"] == "2025-01-02" for i in items)
    assert all(
        (i["stock"]["backfill"] is None) == (int(i["stock"]["ticker"][1:]) % 2 == 0) for i in items
    )
    assert all(i["lastAlertAt"] is not None for i in items)
    assert statement_log.count <= 3, statement_log.queries
    # The log really sees the app's statements: the joined item query, and no read of the
    # viewer's row (this process ensured it on the previous request).
    joined = "\n".join(statement_log.queries)
    assert "FROM watchlists w" in joined and "FROM users WHERE id = $1" not in joined
    print(f"watchlist of {size}: {statement_log.count} statements")

    # Asked again, unchanged: served from the response cache after one counter read.
    statement_log.clear()
    again = await gql("query Measured " + WATCHLIST.strip(), token=viewer.token)
    assert again == body
    assert statement_log.count == 1 and "cache_versions" in statement_log.queries[0]


async def test_add_stock_creates_the_watchlist_row_and_queues_backfill(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer("a@example.com")
    body = await gql(ADD, {"t": " brk.b "}, token=viewer.token)

    assert "errors" not in body, body
    item = body["data"]["addStock"]
    assert item["stock"] == {
        "ticker": "BRK.B",
        "dataStatus": "QUEUED",
        "watcherCount": 1,
        "backfill": {"status": "PENDING", "priority": 1},
    }
    assert item["alertsEnabled"] is True and item["valuationState"] == "NEUTRAL"
    user = await pool.fetchrow("SELECT id, email FROM users")
    assert user is not None and (user["id"], user["email"]) == (viewer.id, "a@example.com")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM watchlists w JOIN entities e ON e.id = w.entity_id "
            "WHERE e.ticker = 'BRK.B' AND w.user_id = $1",
            viewer.id,
        )
        == 1
    )
    # No per-user state row: a watcher's view is derived from the stock's signals.
    assert await pool.fetchval("SELECT count(*) FROM user_entity_settings") == 0
    job = await pool.fetchrow("SELECT requested_by, status FROM backfill_queue")
    assert job is not None and (job["requested_by"], job["status"]) == (viewer.id, "pending")


async def test_add_stock_with_price_data_queues_nothing(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    await api_data.entity("AAPL", "Apple Inc.", has_price_data=True)
    body = await gql(ADD, {"t": "aapl"}, token=new_viewer().token)
    assert body["data"]["addStock"]["stock"]["dataStatus"] == "READY"
    assert body["data"]["addStock"]["stock"]["backfill"] is None
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 0


async def test_add_stock_twice_is_conflict_and_changes_nothing(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await gql(ADD, {"t": "TSLA"}, token=viewer.token)
    body = await gql(ADD, {"t": "tsla"}, token=viewer.token)
    assert error_codes(body) == ["CONFLICT"]
    assert "already on your watchlist" in body["errors"][0]["message"]
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 1
    assert await pool.fetchval("SELECT priority FROM backfill_queue") == 1


async def test_second_user_bumps_the_pending_job_priority(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    for _ in range(3):
        await gql(ADD, {"t": "PLTR"}, token=new_viewer().token)
    rows = await pool.fetch("SELECT status, priority FROM backfill_queue")
    assert [(r["status"], r["priority"]) for r in rows] == [("pending", 3)]


async def test_re_adding_a_stock_does_not_move_its_backfill_up_the_queue(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    pusher = new_viewer()
    for _ in range(30):
        added = await gql(ADD, {"t": "PUSHY"}, token=pusher.token)
        assert "errors" not in added, added
        removed = await gql('mutation { removeStock(ticker: "PUSHY") }', token=pusher.token)
        assert removed["data"]["removeStock"] is True
    assert await pool.fetchval("SELECT priority FROM backfill_queue") == 1
    await gql(ADD, {"t": "PUSHY"}, token=new_viewer().token)
    assert await pool.fetchval("SELECT priority FROM backfill_queue") == 2


async def test_failed_last_job_gets_a_fresh_job(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    api_data: ApiData,
    new_viewer: Callable[..., Viewer],
) -> None:
    await api_data.entity("GONE", data_status="unavailable")
    await api_data.job("GONE", "failed", error="no rows")
    body = await gql(ADD, {"t": "GONE"}, token=new_viewer().token)
    assert body["data"]["addStock"]["stock"]["backfill"] == {"status": "PENDING", "priority": 1}
    assert body["data"]["addStock"]["stock"]["dataStatus"] == "QUEUED"
    statuses = await pool.fetch("SELECT status FROM backfill_queue ORDER BY requested_at")
    assert [r["status"] for r in statuses] == ["failed", "pending"]


async def test_processing_job_is_not_duplicated(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    await api_data.entity("BUSY", data_status="queued")
    await api_data.job("BUSY", "processing")
    body = await gql(ADD, {"t": "BUSY"}, token=new_viewer().token)
    assert body["data"]["addStock"]["stock"]["backfill"]["status"] == "PROCESSING"
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 1


async def test_concurrent_adds_of_a_new_ticker_make_one_entity_and_one_job(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    viewers = [new_viewer() for _ in range(2)]
    for viewer in viewers:
        await _me(gql, viewer)
    bodies = await asyncio.gather(*(gql(ADD, {"t": "ZZNEW"}, token=v.token) for v in viewers))
    assert all("errors" not in b for b in bodies), bodies
    assert await pool.fetchval("SELECT count(*) FROM entities WHERE ticker = 'ZZNEW'") == 1
    jobs = await pool.fetch("SELECT status, priority FROM backfill_queue WHERE ticker = 'ZZNEW'")
    # One job; the second request bumped its priority (+1 per extra enqueue).
    assert [(j["status"], j["priority"]) for j in jobs] == [("pending", 2)]
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 2


async def test_symbol_universe_rejects_unknown_tickers(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    body = await gql(ADD, {"t": "ANYTHING"}, token=viewer.token)  # no universe: accepted
    assert "errors" not in body
    await api_data.entity("KNOWN", "Known Corp", in_symbol_universe=True)
    body = await gql(ADD, {"t": "NOPE"}, token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and "NOPE" in body["errors"][0]["message"]
    assert await pool.fetchval("SELECT count(*) FROM entities WHERE ticker = 'NOPE'") == 0
    assert "errors" not in await gql(ADD, {"t": "known"}, token=viewer.token)


async def test_watchlist_limit_is_100(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await _me(gql, viewer)
    await api_data.entities([(f"L{n:03d}", None) for n in range(100)])
    await pool.execute(
        "INSERT INTO watchlists (user_id, entity_id) SELECT $1, id FROM entities", viewer.id
    )
    body = await gql(ADD, {"t": "ONEMORE"}, token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and "100" in body["errors"][0]["message"]
    assert await pool.fetchval("SELECT count(*) FROM watchlists") == 100
    assert await pool.fetchval("SELECT count(*) FROM entities WHERE ticker = 'ONEMORE'") == 0
    assert await pool.fetchval("SELECT count(*) FROM backfill_queue") == 0
    removed = await gql('mutation { removeStock(ticker: "L000") }', token=viewer.token)
    assert removed["data"]["removeStock"] is True
    assert "errors" not in await gql(ADD, {"t": "ONEMORE"}, token=viewer.token)


async def test_remove_stock_then_readding_shows_the_stocks_states(
    gql: GraphQLClient, pool: asyncpg.Pool, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await gql(ADD, {"t": "AMD"}, token=viewer.token)
    entity = await pool.fetchval("SELECT id FROM entities WHERE ticker = 'AMD'")
    await api_data.signal(entity, dt.date(2025, 3, 3), valuation_regime="CHEAP")

    body = await gql(
        'mutation { a: removeStock(ticker: "amd") b: removeStock(ticker: "AMD") }',
        token=viewer.token,
    )
    assert body["data"] == {"a": True, "b": False}
    assert (await gql("{ watchlist { count } }", token=viewer.token))["data"]["watchlist"] == {
        "count": 0
    }

    again = await gql(ADD, {"t": "AMD"}, token=viewer.token)
    assert again["data"]["addStock"]["valuationState"] == "DOWN"
    # Re-added after the last evaluation: not evaluated for this user yet (and the next
    # evaluation is silent for them, tests/ingest/evaluation/test_run.py).
    assert again["data"]["addStock"].get("lastEvaluatedAt") is None


async def test_set_stock_alerts(gql: GraphQLClient, new_viewer: Callable[..., Viewer]) -> None:
    viewer = new_viewer()
    await gql(ADD, {"t": "META"}, token=viewer.token)
    mutation = """mutation($t: String!, $on: Boolean!) {
        setStockAlerts(ticker: $t, enabled: $on) { alertsEnabled stock { ticker } } }"""
    body = await gql(mutation, {"t": "meta", "on": False}, token=viewer.token)
    assert body["data"]["setStockAlerts"] == {"alertsEnabled": False, "stock": {"ticker": "META"}}
    listed = await gql("{ watchlist { items { alertsEnabled } } }", token=viewer.token)
    assert listed["data"]["watchlist"]["items"] == [{"alertsEnabled": False}]
    missing = await gql(mutation, {"t": "ORCL", "on": True}, token=viewer.token)
    assert error_codes(missing) == ["NOT_FOUND"]


async def test_users_never_touch_each_others_watchlists(
    gql: GraphQLClient, pool: asyncpg.Pool, new_viewer: Callable[..., Viewer]
) -> None:
    alice, bob = new_viewer(), new_viewer()
    await gql(ADD, {"t": "SHOP"}, token=alice.token)
    await _me(gql, bob)

    assert (await gql("{ watchlist { count } }", token=bob.token))["data"]["watchlist"][
        "count"
    ] == 0
    removed = await gql('mutation { removeStock(ticker: "SHOP") }', token=bob.token)
    assert removed["data"]["removeStock"] is False
    switched = await gql(
        'mutation { setStockAlerts(ticker: "SHOP", enabled: false) { alertsEnabled } }',
        token=bob.token,
    )
    assert error_codes(switched) == ["NOT_FOUND"]
    row = await pool.fetchrow("SELECT user_id, alerts_enabled FROM watchlists")
    assert row is not None and (row["user_id"], row["alerts_enabled"]) == (alice.id, True)
    body = await gql("{ me { watchlist { items { stock { ticker } } } } }", token=alice.token)
    assert body["data"]["me"]["watchlist"]["items"] == [{"stock": {"ticker": "SHOP"}}]
