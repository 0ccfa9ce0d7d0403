"""SIGTERM to a `backfill` or `evaluate` process: it hands back what it holds and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from datetime import date

import asyncpg

from services.storage.local import LocalObjectStore
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.evaluation import add_user, watch, weekdays, write_series
from tests.fixtures.ingest import (
    CliResult,
    queue_tickers,
    run_ingest,
    sql_requests_for,
    start_ingest,
    start_slow_backfill,
    wait_for,
)
from tests.fixtures.object_store import SwitchedBucket
from tests.ingest.jobs.test_backfill_processes import assert_entities_consistent


async def terminate(process: asyncio.subprocess.Process) -> tuple[CliResult, float]:
    """SIGTERM, then wait for the exit; returns the output and the seconds it took."""
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode()), (
        time.monotonic() - signalled
    )


async def test_sigterm_hands_the_claimed_backfill_job_back_without_waiting_for_its_lease(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
) -> None:
    # The default 30-minute lease: only the hand-back lets the second run start at once.
    worker = await start_slow_backfill(pool, fake_dolthub, ingest_env, "AAPL")
    result, seconds = await terminate(worker)
    print(f"\nbackfill: SIGTERM -> exit {result.code} in {seconds:.2f} s")
    assert result.code == 0, result.stderr
    assert "1 released" in result.stdout and "0 failed" in result.stdout, result.stdout
    job = await pool.fetchrow("SELECT * FROM backfill_queue")
    assert job is not None
    assert (job["status"], job["locked_by"], job["started_at"]) == ("pending", None, None)
    assert job["retry_count"] == 0 and job["next_attempt_at"] is None
    entity = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'AAPL'")
    assert entity is not None
    assert not entity["has_price_data"] and entity["data_status"] == "queued"

    fake_dolthub.switches.latency_ms = 0
    again = await run_ingest(["backfill"], ingest_env)
    assert again.code == 0 and "1 completed" in again.stdout, again.stdout + again.stderr
    done = await pool.fetchrow("SELECT * FROM backfill_queue")
    assert done is not None and (done["status"], done["retry_count"]) == ("completed", 0)
    await assert_entities_consistent(pool, ingest_store, ["AAPL"])


ENTITIES = 400


async def many_watched_entities(pool: asyncpg.Pool, store: LocalObjectStore) -> date:
    """ENTITIES stocks with one year of flat closes, each watched with a stored BELOW trend.

    Every one of them alerts exactly once (the trend is now ABOVE); returns the as-of date.
    """
    days = weekdays(date(2023, 1, 2), 260)
    await write_series(store, "T000", days, [100.0] * len(days))
    tickers = [f"T{i:03d}" for i in range(ENTITIES)]
    source = store.root / "prices" / "v1" / "T000"
    for ticker in tickers[1:]:
        shutil.copytree(source, store.root / "prices" / "v1" / ticker)
    user = await add_user(pool)
    await pool.execute(
        """
        WITH e AS (
            INSERT INTO entities (ticker, has_price_data, price_data_min_date,
                                  price_data_max_date, data_status)
            SELECT t, true, $2, $3, 'ready' FROM unnest($1::text[]) AS t
            RETURNING id
        ), w AS (
            INSERT INTO watchlists (user_id, entity_id) SELECT $4, id FROM e
        )
        -- The day before, seen by the watcher: trend BELOW, so the as-of day alerts.
        INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime,
                                    fundamental_direction, computed_at)
        SELECT id, $5, 'BELOW_200DMA', 'UNKNOWN', 'UNKNOWN', clock_timestamp() + interval '1 s'
        FROM e
        """,
        tickers,
        days[0],
        days[-1],
        user,
        days[-2],
    )
    return days[-1]


async def test_sigterm_stops_an_evaluation_between_entities_and_a_rerun_finishes_it(
    pool: asyncpg.Pool, ingest_env: dict[str, str], ingest_store: LocalObjectStore
) -> None:
    as_of = await many_watched_entities(pool, ingest_store)
    args = ["evaluate", "--as-of", as_of.isoformat()]
    evaluator = await start_ingest(args, ingest_env, EVALUATION_BATCH_SIZE="5")
    done_sql = "SELECT count(*) FROM evaluation_claims WHERE status = 'done'"
    try:
        deadline = time.monotonic() + 60
        while await pool.fetchval(done_sql) < 3:
            assert time.monotonic() < deadline, "the evaluation never started"
            assert evaluator.returncode is None
            await asyncio.sleep(0.02)
    finally:
        result, seconds = await terminate(evaluator)
    print(f"\nevaluate: SIGTERM -> exit {result.code} in {seconds:.2f} s")
    assert result.code == 0, result.stderr
    assert ", stopped by a signal (" in result.stdout, result.stdout
    assert " 0 failed" in result.stdout

    claims = await pool.fetch("SELECT * FROM evaluation_claims")
    by_status: dict[str, int] = {}
    for claim in claims:
        by_status[claim["status"]] = by_status.get(claim["status"], 0) + 1
    done = by_status.get("done", 0)
    assert 3 <= done < ENTITIES, by_status
    # Nothing is left held: the unstarted claims are due again at once.
    assert by_status == {"done": done, "pending": ENTITIES - done}
    assert all(c["claimed_by"] is None for c in claims if c["status"] == "pending")
    # Each finished entity committed its signal, alert and state together; the others nothing.
    committed = await pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM entity_signals WHERE as_of = $1) AS signals,
               (SELECT count(*) FROM alert_history) AS alerts,
               (SELECT count(*) FROM entity_signals
                WHERE as_of = $1 AND trend_position = 'ABOVE_200DMA') AS states,
               (SELECT count(*) FROM evaluation_claims c
                WHERE c.status = 'done' AND NOT EXISTS (
                    SELECT 1 FROM alert_history a WHERE a.entity_id = c.entity_id)) AS unmatched
        """,
        as_of,
    )
    assert committed is not None
    assert dict(committed) == {"signals": done, "alerts": done, "states": done, "unmatched": 0}

    again = await run_ingest(args, ingest_env)
    assert again.code == 0, again.stderr
    assert f"{ENTITIES - done} entities evaluated" in again.stdout, again.stdout
    assert f"{ENTITIES - done} alerts written" in again.stdout
    alerts = await pool.fetch("SELECT entity_id, count(*) AS n FROM alert_history GROUP BY 1")
    assert len(alerts) == ENTITIES and {a["n"] for a in alerts} == {1}
    runs = await pool.fetch("SELECT finished_at FROM evaluation_runs")
    assert len(runs) == 1 and runs[0]["finished_at"] is not None


async def test_sigterm_during_daily_hands_back_the_backfill_and_runs_no_further_step(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["KO"])
    fake_dolthub.switches.latency_ms = 250
    daily = await start_ingest(["daily"], ingest_env)
    try:
        await wait_for(
            lambda: len(sql_requests_for(fake_dolthub, "ohlcv", "KO")) >= 2, 30, "the backfill"
        )
    finally:
        result, _ = await terminate(daily)
    assert result.code == 130, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("backfill: 1 released, 0 failed"), lines
    assert lines[-1] == "daily: stopped by a signal; steps not run: evaluate, deliver, sync-symbols"
    job = await pool.fetchrow("SELECT status, locked_by FROM backfill_queue")
    assert job is not None and (job["status"], job["locked_by"]) == ("pending", None)
    assert await pool.fetchval("SELECT count(*) FROM symbol_syncs") == 0


async def test_a_second_sigterm_ends_an_evaluation_stuck_on_a_silent_store_at_once(
    pool: asyncpg.Pool, ingest_env: dict[str, str], switched_bucket: SwitchedBucket
) -> None:
    env = {**ingest_env, **switched_bucket.env}
    await queue_tickers(pool, ["KO"])
    assert (await run_ingest(["backfill"], env)).code == 0
    user = await add_user(pool)
    await watch(pool, user, await pool.fetchval("SELECT id FROM entities WHERE ticker = 'KO'"))
    switched_bucket.switch.hang()  # connections accepted, never answered
    evaluator = await start_ingest(["evaluate"], env)
    processing = "SELECT count(*) FROM evaluation_claims WHERE status = 'processing'"
    try:
        # A claim alone is not enough: a stop between the claim and the first read hands the
        # unstarted entity back and exits 0. Wait until a read is sent and left unanswered.
        deadline = time.monotonic() + 30
        while not (switched_bucket.switch.hung_connections and await pool.fetchval(processing)):
            assert time.monotonic() < deadline and evaluator.returncode is None
            await asyncio.sleep(0.05)
        evaluator.send_signal(signal.SIGTERM)
        # The first signal waits for the work in hand, which is stuck on the store.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(evaluator.wait(), 2)
        assert evaluator.returncode is None, "the stuck read did not hold the first stop"
    finally:
        result, seconds = await terminate(evaluator)
    print(f"\nevaluate: second SIGTERM -> exit {result.code} in {seconds:.2f} s")
    assert result.code == 128 + signal.SIGTERM, result.stderr
    assert seconds < 5
    assert "send it again to exit now" in result.stderr
    assert "SIGTERM received again: exiting now" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was written for the stock; its claim comes back when the lease runs out.
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 0
    assert await pool.fetchval("SELECT count(*) FROM entity_signals") == 0
    assert await pool.fetchval(processing) == 1
