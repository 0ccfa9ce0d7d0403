"""What `python -m ingest status` reports: queues, runs and syncs, with the raw error texts.

For operators only: the backfill errors here are the sources' own words, which the API never
shows (it shows a category).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.db import Executor

# Jobs listed per section when no ticker is named; runs listed; failed claims shown per run.
JOBS_SHOWN = 20
RUNS_SHOWN = 5
FAILURES_SHOWN = 5

_QUEUE_COUNTS_SQL = "SELECT status, count(*) AS jobs FROM backfill_queue GROUP BY status"

# One job as every section shows it; statements embed it as an f-string of this constant only.
_JOBS_FROM = """
SELECT q.ticker, q.status, q.priority,
       (SELECT count(*) FROM backfill_requesters r WHERE r.job_id = q.id) AS requesters,
       q.retry_count, q.requested_at, q.started_at, q.completed_at, q.next_attempt_at,
       q.locked_by, q.error_category, q.error_message
FROM backfill_queue q"""

# The claim order (docs/architecture.md): what a worker takes next comes first.
_WAITING_SQL = f"""{_JOBS_FROM}
WHERE q.status IN ('pending', 'processing')
ORDER BY q.status = 'processing' DESC, q.priority DESC, q.requested_at
LIMIT $1
"""

_FAILED_SQL = f"""{_JOBS_FROM}
WHERE q.status = 'failed'
ORDER BY q.completed_at DESC NULLS LAST
LIMIT $1
"""

_TICKER_JOBS_SQL = f"""{_JOBS_FROM}
WHERE q.ticker = ANY($1::text[])
ORDER BY q.ticker, q.requested_at DESC, q.created_at DESC
"""

_RUNS_SQL = """
SELECT r.id, r.as_of, r.scope, r.entity_count, r.started_at, r.finished_at,
       count(c.entity_id) FILTER (WHERE c.status = 'done') AS done,
       count(c.entity_id) FILTER (WHERE c.status = 'failed') AS failed,
       count(c.entity_id) FILTER (WHERE c.status IN ('pending', 'processing')) AS open
FROM (SELECT * FROM evaluation_runs ORDER BY started_at DESC LIMIT $1) r
LEFT JOIN evaluation_claims c ON c.run_id = r.id
GROUP BY r.id, r.as_of, r.scope, r.entity_count, r.started_at, r.finished_at
ORDER BY r.started_at DESC
"""

_RUN_FAILURES_SQL = """
SELECT f.run_id, f.ticker, f.error_message
FROM unnest($1::uuid[]) AS k(run_id)
CROSS JOIN LATERAL (
    SELECT c.run_id, e.ticker, c.error_message
    FROM evaluation_claims c JOIN entities e ON e.id = c.entity_id
    WHERE c.run_id = k.run_id AND c.status = 'failed'
    ORDER BY c.finished_at DESC NULLS LAST
    LIMIT $2
) f
"""

# Pending rows per channel, and failures of the last day (the outbox's finished-row index).
_OUTBOX_SQL = """
SELECT channel,
       count(*) AS pending,
       count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
       min(created_at) AS oldest_pending
FROM deliveries WHERE status = 'pending'
GROUP BY channel ORDER BY channel
"""
_OUTBOX_FAILED_SQL = """
SELECT channel, count(*) AS failed_last_day
FROM deliveries
WHERE status <> 'pending' AND updated_at > now() - interval '1 day' AND status = 'failed'
GROUP BY channel
"""

_LAST_SYNC_SQL = """
SELECT finished_at, symbols, added, retired FROM symbol_syncs ORDER BY finished_at DESC LIMIT 1
"""


async def collect_status(db: Executor, tickers: Sequence[str] = ()) -> dict[str, Any]:
    """The report as plain data (JSON-ready apart from dates and UUIDs)."""
    counts = {row["status"]: row["jobs"] for row in await db.fetch(_QUEUE_COUNTS_SQL)}
    backfill: dict[str, Any] = {"counts": counts}
    if tickers:
        backfill["jobs"] = [dict(row) for row in await db.fetch(_TICKER_JOBS_SQL, list(tickers))]
    else:
        backfill["waiting"] = [dict(row) for row in await db.fetch(_WAITING_SQL, JOBS_SHOWN)]
        backfill["failed"] = [dict(row) for row in await db.fetch(_FAILED_SQL, JOBS_SHOWN)]
    runs = [dict(row) for row in await db.fetch(_RUNS_SQL, RUNS_SHOWN)]
    failures = await db.fetch(_RUN_FAILURES_SQL, [run["id"] for run in runs], FAILURES_SHOWN)
    for run in runs:
        run["failures"] = [
            {"ticker": f["ticker"], "error_message": f["error_message"]}
            for f in failures
            if f["run_id"] == run["id"]
        ]
    outbox = {
        row["channel"]: dict(row) | {"failed_last_day": 0} for row in await db.fetch(_OUTBOX_SQL)
    }
    for row in await db.fetch(_OUTBOX_FAILED_SQL):
        entry = outbox.setdefault(
            row["channel"],
            {"channel": row["channel"], "pending": 0, "due": 0, "oldest_pending": None},
        )
        entry["failed_last_day"] = row["failed_last_day"]
    sync = await db.fetchrow(_LAST_SYNC_SQL)
    return {
        "backfill": backfill,
        "evaluation_runs": runs,
        "outbox": sorted(outbox.values(), key=lambda entry: entry["channel"]),
        "symbol_sync": None if sync is None else dict(sync),
    }
