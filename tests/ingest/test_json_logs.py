"""LOG_FORMAT=json on a real `python -m ingest` run: every stderr line an object with context."""

from __future__ import annotations

import json

import asyncpg

from services.storage.keys import history_key
from services.storage.local import LocalObjectStore
from tests.fixtures.evaluation import add_user, watch
from tests.fixtures.ingest import queue_tickers, run_ingest
from tests.net import free_port


async def test_backfill_logs_json_with_command_and_ticker(
    pool: asyncpg.Pool, ingest_env: dict[str, str]
) -> None:
    await queue_tickers(pool, ["KO", "NODATA"])
    result = await run_ingest(["backfill"], ingest_env, LOG_FORMAT="json")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("backfill: 1 completed, 1 unavailable, 0 failed")
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries and all(isinstance(e, dict) and "timestamp" in e for e in entries)
    started = [e for e in entries if "backfilling" in e["message"]]
    assert {e["ticker"] for e in started} == {"KO", "NODATA"}, started
    assert all(e["command"] == "backfill" and e["level"] == "INFO" for e in started)
    [unavailable] = [e for e in entries if "unavailable" in e["message"]]
    assert (unavailable["ticker"], unavailable["level"]) == ("NODATA", "WARNING")
    assert unavailable["logger"] == "ingest.jobs.backfill"


async def test_failed_steps_are_json_error_records(ingest_env: dict[str, str]) -> None:
    dsn = f"postgresql://ingest:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    result = await run_ingest(["daily"], ingest_env, DATABASE_URL=dsn, LOG_FORMAT="json")
    assert result.code == 1
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [e for e in entries if e["level"] == "ERROR"]
    assert [e["message"].split(":")[0] for e in errors] == [
        "update-prices",
        "backfill",
        "evaluate",
        "deliver",
        "sync-symbols",  # due: the database holds no complete sync
    ]
    assert all(e["command"] == "daily" and "cannot connect" in e["message"] for e in errors)
    assert "s3cret-pw" not in result.stderr


async def test_evaluation_worker_processes_log_json_with_command_and_ticker(
    pool: asyncpg.Pool, ingest_env: dict[str, str], ingest_store: LocalObjectStore
) -> None:
    await queue_tickers(pool, ["KO", "JPM"])
    assert (await run_ingest(["backfill"], ingest_env)).code == 0
    user = await add_user(pool)
    for ticker in ("KO", "JPM"):
        await watch(
            pool, user, await pool.fetchval("SELECT id FROM entities WHERE ticker = $1", ticker)
        )
    # A torn history object makes the worker process that reads it log a warning.
    ingest_store.path_for(history_key("KO")).write_bytes(b"torn")
    result = await run_ingest(["evaluate"], ingest_env, LOG_FORMAT="json", EVALUATION_PROCESSES="2")
    assert result.code == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    # One from the worker that read it, one from the main process checking before its rebuild;
    # a worker without logging set up would have written a plain line, failing json.loads.
    torn = [e for e in entries if e["logger"] == "services.storage.history"]
    assert len(torn) == 2, torn
    for entry in torn:
        assert entry["level"] == "WARNING" and "reading the partitions" in entry["message"]
        assert (entry["command"], entry["ticker"]) == ("evaluate", "KO")
