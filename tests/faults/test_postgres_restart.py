"""PostgreSQL (a scratch cluster of this module's own) restarted under the API and an evaluation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from services.db import CONNECT_TIMEOUT_SECONDS, create_pool
from services.storage.local import LocalObjectStore
from tests.fakes.outage_switch import OutageSwitch
from tests.fixtures.app import error_codes
from tests.fixtures.evaluation import add_entity, add_user, watch, weekdays, write_series
from tests.fixtures.ingest import ROOT, run_ingest, start_ingest
from tests.fixtures.scratch_postgres import ScratchPostgres
from tests.fixtures.ws import (
    ServerProcess,
    WsClient,
    insert_alerts,
    make_entity,
    make_user,
    server_env,
    wait_for_subscribers,
)

pytestmark = pytest.mark.slow

FAIL_FAST_SECONDS = 5.0
# What a masked or leaked database error would show; none of it may reach a client.
INTERNALS = ("asyncpg", "Traceback", "Connect call failed", "refused", "127.0.0.1", "postgres")
PUBLIC_QUERY = '{ stock(ticker: "AAPL") { ticker } popularStocks { ticker } }'
PRIVATE_QUERY = "{ me { id } watchlist { count } }"


async def _post(server: ServerProcess, query: str, token: str | None) -> tuple[float, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"http://127.0.0.1:{server.port}/graphql", json={"query": query}, headers=headers
        )
    return time.monotonic() - started, response


async def _until_served(server: ServerProcess, token: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        _, response = await _post(server, PRIVATE_QUERY, token)
        body: dict[str, Any] = response.json()
        if "errors" not in body or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_the_api_fails_fast_while_postgres_is_down_and_recovers_without_a_restart(
    scratch_postgres: ScratchPostgres,
    scratch_database: str,
    tmp_path: Path,
    make_token: Callable[..., str],
) -> None:
    server = ServerProcess(server_env(scratch_database, tmp_path / "data"), tmp_path / "api.log")
    try:
        server.wait_ready()
        pool = await create_pool(scratch_database, min_size=1, max_size=2)
        user, entity = await make_user(pool), await make_entity(pool)
        await pool.close()
        token = make_token(user)
        async with WsClient.connect(server.ws_url) as client:
            assert (await client.init(token))["type"] == "connection_ack"
            await client.subscribe("1")
            await wait_for_subscribers(server, 1)
            pool = await create_pool(scratch_database, min_size=1, max_size=2)
            first = await insert_alerts(pool, [(user, entity)])
            await pool.close()
            assert [a["id"] for a in await client.next_alerts(1)] == [str(first[0])]
            assert "errors" not in (await _post(server, PRIVATE_QUERY, token))[1].json()

            scratch_postgres.stop()
            # A user this process has not seen yet cannot be upserted: "try again later".
            async with WsClient.connect(server.ws_url) as newcomer:
                init = {"Authorization": f"Bearer {make_token()}"}
                await newcomer.send({"type": "connection_init", "payload": init})
                with pytest.raises(ConnectionClosed) as closed:
                    await newcomer.receive(FAIL_FAST_SECONDS)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            for query, who in ((PUBLIC_QUERY, None), (PRIVATE_QUERY, token)):
                for _ in range(3):  # the first on a dead pooled connection, then new connects
                    elapsed, response = await _post(server, query, who)
                    assert elapsed < FAIL_FAST_SECONDS, (query, elapsed)
                    assert response.status_code == 200, response.text
                    body = response.json()
                    assert set(error_codes(body)) == {"DATABASE_UNAVAILABLE"}, body
                    assert not any(word in response.text for word in INTERNALS), response.text
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=30) as http:
                health = await http.get(f"http://127.0.0.1:{server.port}/api/health")
                ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
            assert time.monotonic() - started < 2 * FAIL_FAST_SECONDS
            assert (health.status_code, health.json()["database"]) == (503, False)
            assert ready.status_code == 503
            assert server.proc.poll() is None

            scratch_postgres.start()
            body = await _until_served(server, token, 30)
            assert "errors" not in body, body
            assert body["data"]["me"]["id"] == str(user)
            # The LISTEN connection came back too: a new alert reaches the open subscription.
            pool = await create_pool(scratch_database, min_size=1, max_size=2)
            try:
                later = await insert_alerts(pool, [(user, entity)])
            finally:
                await pool.close()
            alerts = await client.next_alerts(1, seconds=30)
            assert [a["id"] for a in alerts] == [str(later[0])]
            await client.assert_silent(1.0)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "Exception in ASGI application" not in log and "unexpected error" not in log, log


ENTITIES = 24
PRIVATE_PREFIXES = ("DATABASE_URL", "OBJECT_STORE", "EVALUATION_", "APP_")
BATCH = 4


async def _evaluation_data(dsn: str, store: LocalObjectStore) -> tuple[list[Any], date]:
    """ENTITIES watched stocks last seen BELOW while their prices say ABOVE: one alert each."""
    days = weekdays(date(2023, 1, 2), 260)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        user = await add_user(pool)
        entities = []
        for i in range(ENTITIES):
            ticker = f"R{i:02d}"
            await write_series(store, ticker, days, [100.0 + i] * len(days))
            entity = await add_entity(pool, ticker, days[0], days[-1])
            await watch(pool, user, entity)
            entities.append(entity)
        await pool.execute(
            "INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime, "
            "fundamental_direction, computed_at) SELECT id, $1, 'BELOW_200DMA', 'UNKNOWN', "
            "'UNKNOWN', clock_timestamp() + interval '1 s' FROM entities",
            days[-2],
        )
    finally:
        await pool.close()
    return entities, days[-1]


async def _blocked_on(
    conn: asyncpg.Connection, process: asyncio.subprocess.Process, seconds: float
) -> None:
    """Until another session waits on a lock (the evaluator's stuck commit)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await conn.execute(
            "SELECT pg_stat_clear_snapshot()"
        )  # inside a transaction, stats stay frozen
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    output = b"".join([await process.stdout.read(), await process.stderr.read()])  # type: ignore[union-attr]
    raise AssertionError(f"the evaluator never reached the locked entity: {output.decode()}")


async def test_an_evaluation_cut_by_a_postgres_restart_completes_when_rerun_without_duplicates(
    scratch_postgres: ScratchPostgres, scratch_database: str, tmp_path: Path
) -> None:
    store = LocalObjectStore(tmp_path / "objects", fsync=False)
    entities, as_of = await _evaluation_data(scratch_database, store)
    await store.close()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)},
        "APP_ENV": "test",
        "DATABASE_URL": scratch_database,
        "DATA_DIR": str(tmp_path / "data"),
        "OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}",
        "EVALUATION_BATCH_SIZE": str(BATCH),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    args = ["evaluate", "--as-of", as_of.isoformat()]
    # Hold one entity's signal row for the day (uncommitted), so the run stops mid-way with a
    # claimed batch in flight.
    blocker = await asyncpg.connect(scratch_database)
    held = blocker.transaction()
    await held.start()
    await blocker.execute(
        "INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime, "
        "fundamental_direction) VALUES ($1, $2, 'UNKNOWN', 'UNKNOWN', 'UNKNOWN')",
        entities[5],
        as_of,
    )
    process = await start_ingest(args, env)
    try:
        await _blocked_on(blocker, process, 30)
        written = await blocker.fetchval("SELECT count(*) FROM alert_history")
        assert written < ENTITIES
        scratch_postgres.stop()  # ends every session, the blocker's too
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if not blocker.is_closed():
            blocker.terminate()
    assert process.returncode == 1, stderr.decode()
    # One `error: …` line at the end; asyncpg's own pool warnings may come before it.
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("error: ") and "unexpected" not in last, stderr.decode()

    scratch_postgres.start()
    again = await run_ingest(args, env)
    assert again.code == 0, again.stdout + again.stderr
    conn = await asyncpg.connect(scratch_database)
    try:
        per_entity = await conn.fetch(
            "SELECT entity_id, count(*) AS n FROM alert_history GROUP BY entity_id"
        )
        open_runs = await conn.fetchval(
            "SELECT count(*) FROM evaluation_runs WHERE finished_at IS NULL"
        )
    finally:
        await conn.close()
    assert {row["entity_id"]: row["n"] for row in per_entity} == dict.fromkeys(entities, 1)
    assert open_runs == 0


async def test_a_database_host_that_stops_answering_fails_requests_within_the_connect_timeout(
    scratch_database: str, tmp_path: Path, make_token: Callable[..., str]
) -> None:
    parts = urlsplit(scratch_database)
    switch = OutageSwitch((parts.hostname or "127.0.0.1", parts.port or 5432)).up()
    dsn = scratch_database.replace(f":{parts.port}/", f":{switch.port}/")
    server = ServerProcess(server_env(dsn, tmp_path / "data"), tmp_path / "api.log")
    pool = await create_pool(scratch_database, min_size=1, max_size=2)  # not through the switch
    try:
        server.wait_ready()
        user, entity = await make_user(pool), await make_entity(pool)
        async with WsClient.connect(server.ws_url) as client:
            assert (await client.init(make_token(user)))["type"] == "connection_ack"
            await client.subscribe("1")
            await wait_for_subscribers(server, 1)
            switch.hang()
            for _ in range(2):  # a dead pooled connection, then a connect that gets no answer
                elapsed, response = await _post(server, PUBLIC_QUERY, None)
                assert elapsed < CONNECT_TIMEOUT_SECONDS + FAIL_FAST_SECONDS, elapsed
                codes = set(error_codes(response.json()))
                assert codes == {"DATABASE_UNAVAILABLE"}, response.text
            switch.up()
            body = (await _post(server, PUBLIC_QUERY, None))[1].json()
            assert "errors" not in body, body
            # The LISTEN connection's own reconnect gave up on the silent host in time too.
            later = await insert_alerts(pool, [(user, entity)])
            alerts = await client.next_alerts(1, seconds=4 * CONNECT_TIMEOUT_SECONDS)
            assert [a["id"] for a in alerts] == [str(later[0])]
    finally:
        await pool.close()
        server.stop()
        switch.close()
