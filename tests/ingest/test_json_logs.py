"""LOG_FORMAT=json on a real `python -m ingest` run: every stderr line an object with context."""

from __future__ import annotations

import json

import asyncpg

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
