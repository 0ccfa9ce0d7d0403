"""DoltHub fails every request of a whole `python -m ingest daily` run, then recovers."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.evaluation import add_user, watch
from tests.fixtures.ingest import queue_tickers, run_ingest

pytestmark = pytest.mark.slow

EVERY_REQUEST = 1_000_000


async def statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT ticker, data_status FROM entities")
    return {row["ticker"]: row["data_status"] for row in rows}


# 503 from DoltHub itself; 520 as a CDN in front of it answers when the origin is down;
# "timeout": every request hangs past DOLTHUB_TIMEOUT_SECONDS.
@pytest.mark.parametrize("outage", ["HTTP 503", "HTTP 520", "timeout"])
async def test_a_dolthub_outage_fails_the_daily_run_loudly_and_marks_no_stock_unavailable(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub, outage: str
) -> None:
    await queue_tickers(pool, ["KO"])
    setup = await run_ingest(["backfill"], ingest_env)
    assert setup.code == 0 and "1 completed" in setup.stdout, setup.stdout + setup.stderr
    await pool.execute("UPDATE entities SET price_data_max_date = '2026-11-20'")
    user = await add_user(pool)
    await watch(pool, user, await pool.fetchval("SELECT id FROM entities WHERE ticker = 'KO'"))
    await queue_tickers(pool, ["JPM"])

    fake_dolthub.reset()
    down_env = dict(ingest_env)
    if outage == "timeout":
        # Each request answers after the client gave up; one retry keeps the run short.
        fake_dolthub.switches.latency_ms = 2_500
        down_env |= {"DOLTHUB_TIMEOUT_SECONDS": "1", "DOLTHUB_MAX_RETRIES": "1"}
        attempts_per_query = 2
    else:
        # Every request fails; Retry-After 0 keeps the client's six attempts per query quick.
        status = int(outage.removeprefix("HTTP "))
        fake_dolthub.fail_next(EVERY_REQUEST, status=status, retry_after="0")
        attempts_per_query = 6
    down = await run_ingest(["daily"], down_env)
    assert down.code == 1, down.stdout + down.stderr
    lines = down.stdout.strip().splitlines()
    update = next(line for line in lines if line.startswith("update-prices: "))
    assert "1 failed" in update and "KO: DoltHub" in update and outage in update, update
    assert f"after {attempts_per_query} attempts" in update, update
    backfill = next(line for line in lines if line.startswith("backfill: "))
    assert "1 retry scheduled" in backfill and "0 failed" in backfill, backfill
    # Both steps that ask DoltHub fail: new bars, and the first symbol sync (due: never run).
    assert lines[-1] == "daily: failed steps: update-prices, sync-symbols", down.stdout
    assert "Traceback" not in down.stderr
    assert len(fake_dolthub.requests) > attempts_per_query  # it really asked, and retried

    assert await statuses(pool) == {"KO": "ready", "JPM": "queued"}
    job = await pool.fetchrow(
        "SELECT status, retry_count, error_message FROM backfill_queue WHERE ticker = 'JPM'"
    )
    assert job is not None and (job["status"], job["retry_count"]) == ("pending", 1)
    assert outage in job["error_message"]
    ko = await pool.fetchrow(
        "SELECT price_data_max_date::text AS max_date, has_price_data FROM entities "
        "WHERE ticker = 'KO'"
    )
    assert ko is not None and (ko["max_date"], ko["has_price_data"]) == ("2026-11-20", True)

    fake_dolthub.reset()
    await pool.execute("UPDATE backfill_queue SET next_attempt_at = now() WHERE ticker = 'JPM'")
    up = await run_ingest(["daily"], ingest_env)
    assert up.code == 0, up.stdout + up.stderr
    assert up.stdout.strip().endswith("daily: all steps succeeded")
    after = await statuses(pool)  # the symbol sync also added the search universe ("none")
    assert {ticker: after[ticker] for ticker in ("KO", "JPM")} == {"KO": "ready", "JPM": "ready"}
    max_date = await pool.fetchval("SELECT price_data_max_date FROM entities WHERE ticker = 'KO'")
    assert max_date.isoformat() > "2026-11-20"
