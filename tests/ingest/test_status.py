"""`python -m ingest status`: the raw errors the API never shows, for operators only."""

from __future__ import annotations

import json

import asyncpg

from tests.fixtures.delivery import DeliveryWorld
from tests.fixtures.ingest import queue_tickers, run_ingest

RAW = "DoltHub answered HTTP 302 redirecting to http://x/leak db_password=hunter2\x1b[2J\nforged"


async def _seed(pool: asyncpg.Pool, world: DeliveryWorld) -> None:
    await queue_tickers(pool, ["KO", "PEP"])
    await pool.execute(
        "UPDATE backfill_queue SET status = 'failed', completed_at = now(), error_message = $1, "
        "error_category = 'rejected by source' WHERE ticker = 'KO'",
        RAW,
    )
    run_id = await pool.fetchval(
        "INSERT INTO evaluation_runs (as_of, scope, entity_count, finished_at) "
        "VALUES ('2026-11-27', '*', 2, now()) RETURNING id"
    )
    await pool.execute(
        "INSERT INTO evaluation_claims (run_id, entity_id, status, error_message, finished_at) "
        "SELECT $1, id, 'failed', 'ValueError: bad split', now() "
        "FROM entities WHERE ticker = 'PEP'",
        run_id,
    )
    await pool.execute("INSERT INTO symbol_syncs (symbols, added, retired) VALUES (8123, 4, 1)")
    user = await world.user(email="ops@example.com")
    await world.endpoint(user, "http://127.0.0.1:9/hook")
    await world.alert(user, "ACME")


async def test_status_shows_raw_errors_escaped_with_runs_outbox_and_sync(
    pool: asyncpg.Pool, world: DeliveryWorld, ingest_env: dict[str, str]
) -> None:
    await _seed(pool, world)
    result = await run_ingest(["status"], ingest_env)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.startswith("backfill queue: 1 pending, 0 processing, 1 failed, 0 completed")
    # The raw text is there for operators, escaped: no terminal escape, no forged line.
    assert "[rejected by source] DoltHub answered HTTP 302" in out
    assert "db_password=hunter2\\x1b[2J\\nforged" in out
    assert "\x1b" not in out and "\nforged" not in out
    assert "PEP: ValueError: bad split" in out
    assert "1 done" not in out and "0 done, 1 failed, 0 open of 2" in out
    assert "email    1 pending (1 due)" in out and "webhook  1 pending (1 due)" in out
    assert "symbol sync: " in out and "8123 symbols, 4 added, 1 retired" in out


async def test_status_json_for_named_tickers(
    pool: asyncpg.Pool, world: DeliveryWorld, ingest_env: dict[str, str]
) -> None:
    await _seed(pool, world)
    result = await run_ingest(["status", "ko", "NONE", "--json"], ingest_env)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    [job] = report["backfill"]["jobs"]
    assert job["ticker"] == "KO" and job["error_message"] == RAW  # unabridged for scripts
    assert job["error_category"] == "rejected by source"
    assert report["backfill"]["counts"] == {"pending": 1, "failed": 1}
    assert [run["failures"] for run in report["evaluation_runs"]] == [
        [{"ticker": "PEP", "error_message": "ValueError: bad split"}]
    ]
    assert {c["channel"]: c["pending"] for c in report["outbox"]} == {"email": 1, "webhook": 1}
    assert report["symbol_sync"]["symbols"] == 8123


async def test_status_of_an_empty_database(ingest_env: dict[str, str]) -> None:
    result = await run_ingest(["status"], ingest_env)
    assert result.code == 0, result.stderr
    assert "evaluation runs (newest first):\n  none" in result.stdout
    assert "outbox (pending per channel):\n  empty" in result.stdout
    assert result.stdout.rstrip().endswith("symbol sync: never")
