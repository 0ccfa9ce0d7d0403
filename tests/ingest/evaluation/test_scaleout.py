"""Scale-out: evaluator tasks, processes and worker processes split one run without duplicates."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from ingest.evaluation.run import run_evaluation
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fixtures.evaluation import (
    D0,
    D1,
    VALUATION,
    add_entity,
    add_user,
    alerts,
    scenario_entity,
    watch,
    weekdays,
    write_series,
)

# The previous day's signal of every stock, seen by its watchers, with the trend BELOW.
PREVIOUS_TREND_BELOW = """
INSERT INTO entity_signals (entity_id, as_of, trend_position, valuation_regime,
                            fundamental_direction, computed_at)
SELECT id, $1, 'BELOW_200DMA', 'UNKNOWN', 'UNKNOWN', clock_timestamp() FROM entities
"""


async def test_two_concurrent_evaluators_split_the_work(
    pool: asyncpg.Pool,
    database_url: str,
    eval_store: LocalObjectStore,
) -> None:
    settings = Settings.from_env({"EVALUATION_BATCH_SIZE": "2"})
    days = weekdays(date(2023, 1, 2), 260)
    user = await add_user(pool)
    for i in range(24):
        ticker = f"T{i:02d}"
        await write_series(eval_store, ticker, days, [100.0 + i] * 260)
        entity = await add_entity(pool, ticker, days[0], days[-1])
        await watch(pool, user, entity)
    # Every previous trend says BELOW: each entity must alert exactly once (now ABOVE).
    await pool.execute(PREVIOUS_TREND_BELOW, days[-2])
    seen: list[tuple[int, int]] = []
    first, second = await asyncio.gather(
        run_evaluation(settings, database_url, as_of=days[-1], store=eval_store),
        run_evaluation(
            settings,
            database_url,
            as_of=days[-1],
            store=eval_store,
            progress=lambda done, total: seen.append((done, total)),
        ),
    )
    assert seen[0] == (0, 24) and seen[-1] == (second.entities, 24)
    assert first.entities + second.entities == 24
    assert first.entities > 0 and second.entities > 0
    assert first.alerts_written + second.alerts_written == 24
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 24
    workers = await pool.fetch("SELECT DISTINCT claimed_by FROM evaluation_claims")
    assert len(workers) == 2
    assert await pool.fetchval("SELECT count(*) FROM evaluation_runs") == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM evaluation_runs WHERE finished_at IS NOT NULL")
        == 1
    )


EVALUATOR_SCRIPT = """
import asyncio, sys
from datetime import date
from pathlib import Path
from pathlib import Path
from ingest.evaluation.run import run_evaluation
from services.storage.factory import LocalObjectStore
from services.settings import Settings

async def main():
    settings = Settings.from_env({"EVALUATION_BATCH_SIZE": "1"})
    store = LocalObjectStore(Path(sys.argv[2]), fsync=False)
    summary = await run_evaluation(
        settings, sys.argv[1], as_of=date.fromisoformat(sys.argv[3]), store=store
    )
    print(summary.entities, summary.alerts_written)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_two_evaluator_processes_split_the_work(
    pool: asyncpg.Pool, database_url: str, eval_store: LocalObjectStore
) -> None:
    days = weekdays(date(2023, 1, 2), 260)
    user = await add_user(pool)
    for i in range(30):
        ticker = f"P{i:02d}"
        await write_series(eval_store, ticker, days, [50.0 + i] * 260)
        await watch(pool, user, await add_entity(pool, ticker, days[0], days[-1]))
    await pool.execute(PREVIOUS_TREND_BELOW, days[-2])
    args = [database_url, str(eval_store.root), days[-1].isoformat()]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", EVALUATOR_SCRIPT, *args, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    counts = [tuple(int(x) for x in out.decode().split()) for out, _ in outputs]
    assert sum(c[0] for c in counts) == 30 and sum(c[1] for c in counts) == 30
    assert await pool.fetchval("SELECT count(*) FROM alert_history") == 30
    assert await pool.fetchval("SELECT count(DISTINCT entity_id) FROM alert_history") == 30
    assert (
        await pool.fetchval("SELECT count(*) FROM entity_signals WHERE as_of = $1", days[-1]) == 30
    )


@pytest.mark.slow
async def test_worker_processes_compute_the_same_alerts(
    pool: asyncpg.Pool, database_url: str, eval_store: LocalObjectStore, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {"EVALUATION_PROCESSES": "2", "OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}"}
    )
    entity = await scenario_entity(pool, eval_store)
    bad = await scenario_entity(pool, eval_store, "BAD")
    user = await add_user(pool)
    await watch(pool, user, entity)
    await watch(pool, user, bad)
    eval_store.path_for("prices/v1/BAD/2024/04/data.parquet").write_bytes(b"garbage")
    await run_evaluation(settings, database_url, as_of=D0, store=eval_store)
    summary = await run_evaluation(settings, database_url, as_of=D1, store=eval_store)
    assert summary.entities == 1 and summary.failures == 1 and summary.failed_tickers == ["BAD"]
    assert summary.read_seconds > 0 and summary.compute_seconds > 0
    rows = await alerts(pool, VALUATION)
    assert [(r["as_of"], r["new_state"]) for r in rows] == [(D1, "CHEAP")]
    claim = await pool.fetchrow(
        "SELECT c.* FROM evaluation_claims c JOIN evaluation_runs r ON r.id = c.run_id "
        "WHERE c.entity_id = $1 AND r.as_of = $2",
        bad,
        D1,
    )
    assert claim is not None and claim["status"] == "failed"
    assert "corrupt object" in claim["error_message"]
