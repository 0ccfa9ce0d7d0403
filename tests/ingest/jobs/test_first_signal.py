"""A stock added today shows its arrows as soon as its backfill completes, with no alert."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import asyncpg

from ingest.dolthub.client import DoltHubClient
from ingest.jobs.backfill import run_backfill
from ingest.progress import Progress
from services import cache_versions
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fixtures.api import Viewer
from tests.fixtures.app import GraphQLClient
from tests.fixtures.evaluation import add_user
from tests.fixtures.ingest import queue_tickers, start_ingest

ADD = "mutation($t: String!) { addStock(ticker: $t) { stock { ticker backfill { status } } } }"
WATCHLIST = """
{ watchlist { items { valuationState trendState fundamentalsState
    valuationRegime trendPosition fundamentalDirection lastEvaluatedAt
    stock { ticker dataStatus signal { asOf trendPosition valuationRegime } } } } }
"""
ARROWS = ("valuationState", "trendState", "fundamentalsState")


async def watchlist_item(gql: GraphQLClient, viewer: Viewer) -> dict[str, Any]:
    body = await gql(WATCHLIST, token=viewer.token)
    assert "errors" not in body, body
    (item,) = body["data"]["watchlist"]["items"]
    return dict(item)


def shows_arrows(item: dict[str, Any]) -> bool:
    return any(item[arrow] != "NEUTRAL" for arrow in ARROWS)


async def wait_for_arrows(
    gql: GraphQLClient, viewer: Viewer, started: float
) -> tuple[dict[str, Any], float]:
    """Poll the watchlist until an arrow is not NEUTRAL; the item and seconds since `started`."""
    item = await watchlist_item(gql, viewer)
    while not shows_arrows(item):
        assert time.monotonic() - started < 55, "no arrows within the minute"
        await asyncio.sleep(0.1)
        item = await watchlist_item(gql, viewer)
    return item, time.monotonic() - started


async def test_add_stock_then_backfill_shows_arrows_within_the_minute_without_an_alert(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
    ingest_env: dict[str, str],
) -> None:
    viewer = new_viewer()
    started = time.monotonic()
    added = await gql(ADD, {"t": "AAPL"}, token=viewer.token)
    assert added["data"]["addStock"]["stock"]["backfill"] == {"status": "PENDING"}, added
    before = await watchlist_item(gql, viewer)
    assert [before[arrow] for arrow in ARROWS] == ["NEUTRAL"] * 3
    assert before["stock"]["signal"] is None
    await watchlist_item(gql, viewer)  # now answered from the response cache
    entity = await pool.fetchval("SELECT id FROM entities WHERE ticker = 'AAPL'")
    scopes = [cache_versions.user_scope(viewer.id), cache_versions.stock_scope(entity)]
    user_version, stock_version = await cache_versions.read(pool, scopes)

    worker = await start_ingest(["backfill"], ingest_env)  # what cron or a deploy would start
    try:
        item, elapsed = await wait_for_arrows(gql, viewer, started)
        stdout, stderr = await worker.communicate()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    print(f"\naddStock -> non-NEUTRAL arrows: {elapsed:.2f} s (backfill worker subprocess)")
    assert worker.returncode == 0, stderr.decode()
    summary = stdout.decode()
    assert "1 completed" in summary and "1 evaluated" in summary and "0 failed" in summary

    signal = await pool.fetchrow(
        "SELECT s.* FROM entity_signals s JOIN entities e ON e.id = s.entity_id "
        "WHERE e.ticker = 'AAPL'"
    )
    assert signal is not None and signal["trend_position"] != "UNKNOWN"
    # The arrows come from the first evaluation, computed after the stock was added.
    added_at = await pool.fetchval("SELECT added_at FROM watchlists WHERE user_id = $1", viewer.id)
    assert signal["computed_at"] > added_at
    assert (item["valuationRegime"], item["trendPosition"], item["fundamentalDirection"]) == (
        signal["valuation_regime"],
        signal["trend_position"],
        signal["fundamental_direction"],
    )
    assert item["stock"]["signal"]["asOf"] == signal["as_of"].isoformat()
    assert item["stock"]["dataStatus"] == "READY" and item["lastEvaluatedAt"] is not None
    # Silent: a first evaluation writes no alert and queues no delivery.
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    # The first evaluation wrote nothing per watcher: the stock's counter moved (its signal
    # and backfill), the watcher's own did not, and the cached watchlist still refreshed.
    user_after, stock_after = await cache_versions.read(pool, scopes)
    assert stock_after > stock_version and user_after == user_version


async def test_only_watched_tickers_are_evaluated_after_their_backfill(
    pool: asyncpg.Pool,
    ingest_settings: Settings,
    ingest_store: LocalObjectStore,
    dolthub_client: DoltHubClient,
) -> None:
    await queue_tickers(pool, ["KO", "JPM"])
    user = await add_user(pool)
    await pool.execute(
        "INSERT INTO watchlists (user_id, entity_id) SELECT $1, id FROM entities "
        "WHERE ticker = 'KO'",
        user,
    )
    progress = Progress("backfill", interactive=False)
    await run_backfill(
        ingest_settings, pool, dolthub_client, ingest_store, progress, today=date(2026, 11, 28)
    )
    assert progress.failed == 0 and progress.outcomes["completed"] == 2
    assert progress.counts["evaluated"] == 1
    evaluated = await pool.fetch(
        "SELECT e.ticker FROM entity_signals s JOIN entities e ON e.id = s.entity_id"
    )
    assert [r["ticker"] for r in evaluated] == ["KO"]
    signal = await pool.fetchrow("SELECT * FROM entity_signals")
    assert signal is not None and signal["trend_position"] in ("ABOVE_200DMA", "BELOW_200DMA")
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0


async def test_a_following_worker_picks_up_add_stock_and_shows_arrows_then_stops_on_sigterm(
    gql: GraphQLClient,
    pool: asyncpg.Pool,
    new_viewer: Callable[..., Viewer],
    ingest_env: dict[str, str],
) -> None:
    follower = await start_ingest(["backfill", "--follow"], ingest_env)
    try:
        assert follower.stderr is not None
        line = b""
        while b"following the queue" not in line:  # started and idle: nothing queued yet
            line = await asyncio.wait_for(follower.stderr.readline(), 30)
            assert line, "the follower exited"
        viewer = new_viewer()
        started = time.monotonic()
        await gql(ADD, {"t": "MSFT"}, token=viewer.token)
        _, elapsed = await wait_for_arrows(gql, viewer, started)
        assert follower.returncode is None  # still following after the job
        follower.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(follower.communicate(), 30)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    print(f"\naddStock -> non-NEUTRAL arrows: {elapsed:.2f} s (idle `backfill --follow` worker)")
    assert follower.returncode == 0
    assert "1 completed" in stdout.decode() and "1 evaluated" in stdout.decode()
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0
