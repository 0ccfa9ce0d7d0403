"""The S3 store (moto) goes down during a backfill and under `Stock.prices`, then comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import boto3
import httpx
import pytest

from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.app import error_codes
from tests.fixtures.ingest import queue_tickers, run_ingest, start_ingest
from tests.fixtures.object_store import SwitchedBucket
from tests.fixtures.ws import ServerProcess

pytestmark = pytest.mark.slow

COVERAGE_SQL = """
SELECT has_price_data, has_fundamental_data, data_status, price_data_min_date,
       price_data_max_date, fundamental_data_min_date, fundamental_data_max_date
FROM entities WHERE ticker = $1
"""
STOCK_QUERY = """query($t: String!) { stock(ticker: $t) {
  hasPriceData dataStatus backfill { status retryCount } prices { date close sma200 } } }"""


def _keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Keys in the bucket, read from moto directly (not through the switch)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        response = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    finally:
        client.close()
    return [item["Key"] for item in response.get("Contents", ())]


async def _stock(
    server: ServerProcess, ticker: str, *, new_question: bool = False
) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    # A document not asked before cannot come from the response cache.
    query = STOCK_QUERY + ("\n# asked for the first time" if new_question else "")
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"http://127.0.0.1:{server.port}/graphql",
            json={"query": query, "variables": {"t": ticker}},
        )
    return time.monotonic() - started, response


async def test_an_object_store_outage_reschedules_the_backfill_and_prices_answer_a_clear_code(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    fake_dolthub: FakeDoltHub,
    moto_endpoint: str,
    switched_bucket: SwitchedBucket,
    start_server: Callable[..., ServerProcess],
) -> None:
    switch, bucket, store_env = (
        switched_bucket.switch,
        switched_bucket.bucket,
        switched_bucket.env,
    )
    env = {**ingest_env, **store_env, "BACKFILL_YEARS": "3"}
    await queue_tickers(pool, ["KO"])
    first = await run_ingest(["backfill"], env)
    assert first.code == 0 and "1 completed" in first.stdout, first.stdout + first.stderr
    server = start_server(**store_env)
    _, response = await _stock(server, "KO")
    ko_prices = response.json()["data"]["stock"]["prices"]
    assert len(ko_prices) > 200
    ko_coverage = await pool.fetchrow(COVERAGE_SQL, "KO")

    await queue_tickers(pool, ["JPM"])
    coverage = await pool.fetchrow(COVERAGE_SQL, "JPM")
    backfill = await start_ingest(["backfill"], env)
    try:
        # Cut the store once the job has begun writing: some objects are in, most are not.
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(_keys, moto_endpoint, bucket, "prices/v1/JPM/"):
            assert time.monotonic() < deadline and backfill.returncode is None
            await asyncio.sleep(0.01)
        switch.down()
        stdout, stderr = await asyncio.wait_for(backfill.communicate(), 60)
    finally:
        if backfill.returncode is None:
            backfill.kill()
            await backfill.wait()
    output = stdout.decode() + stderr.decode()
    assert "1 completed" not in stdout.decode(), f"the store was cut too late: {output}"
    assert backfill.returncode == 0, output  # a rescheduled transient failure is expected
    assert "1 retry scheduled" in stdout.decode(), output
    job = await pool.fetchrow(
        "SELECT status, retry_count, next_attempt_at > now() AS later, error_message "
        "FROM backfill_queue WHERE ticker = 'JPM'"
    )
    assert job is not None and (job["status"], job["retry_count"], job["later"]) == (
        "pending",
        1,
        True,
    ), dict(job or {})
    written = await asyncio.to_thread(_keys, moto_endpoint, bucket, "")
    assert any(k.startswith("prices/v1/JPM/") for k in written)  # half-written objects…
    # (The write order is splits, prices, fundamentals, then the history object.)
    assert not any(k.startswith(("fundamentals/v1/JPM/", "history/v1/JPM/")) for k in written)
    assert await pool.fetchrow(COVERAGE_SQL, "JPM") == coverage  # …that nobody sees

    elapsed, response = await _stock(server, "JPM")
    stock = response.json()["data"]["stock"]
    assert stock["hasPriceData"] is False and stock["prices"] == []
    assert stock["backfill"] == {"status": "PENDING", "retryCount": 1}
    # KO's cached answer stays valid (nothing about KO changed, JPM's failure does not touch
    # it); a question that needs the store now gets a clear code.
    _, cached = await _stock(server, "KO")
    assert cached.json()["data"]["stock"]["prices"] == ko_prices
    elapsed, response = await _stock(server, "KO", new_question=True)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert error_codes(body) == ["STORAGE_UNAVAILABLE"], body
    assert elapsed < 30
    for internal in (bucket, "127.0.0.1", "S3 ", "Traceback", "botocore"):
        assert internal not in response.text, response.text
    async with httpx.AsyncClient(timeout=30) as http:
        health = await http.get(f"http://127.0.0.1:{server.port}/api/health")
        ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
    assert (health.status_code, health.json()["objectStore"]) == (503, False)
    assert ready.status_code == 200  # the database answers: stay in the load balancer

    switch.up()
    _, response = await _stock(server, "KO")
    assert response.json()["data"]["stock"]["prices"] == ko_prices
    assert await pool.fetchrow(COVERAGE_SQL, "KO") == ko_coverage
    await pool.execute("UPDATE backfill_queue SET next_attempt_at = now() WHERE ticker = 'JPM'")
    again = await run_ingest(["backfill"], env)
    assert again.code == 0 and "1 completed" in again.stdout, again.stdout + again.stderr
    after = await pool.fetchrow(COVERAGE_SQL, "JPM")
    assert after is not None and after["has_price_data"] and after["data_status"] == "ready"
    _, response = await _stock(server, "JPM")
    assert len(response.json()["data"]["stock"]["prices"]) > 200
