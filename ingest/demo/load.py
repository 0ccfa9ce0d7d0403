"""`python -m ingest demo`: the offline demo data set, loaded through the real write paths.

1. Write DoltHub-shaped CSVs for 30 synthetic `.DEMO` stocks into $DATA_DIR/demo-csv.
2. Import them with `import-csv`'s code (objects, then entity metadata).
3. Label the entities as synthetic, create the demo user (onboarded, style 'blend') and watch
   the ten demo stocks designed to move.
4. Evaluate on BASELINE (sets the user's states silently), then on each REPLAY date, so the
   designed moves become real alerts through the real evaluator.

Safe to re-run: files and objects are rewritten identically, rows are upserted, and dates
already evaluated are not replayed again (a half-finished run resumes where it stopped).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import asyncpg

from ingest.demo.csv_files import write_demo_csvs
from ingest.demo.stocks import BASELINE, DEMO_STOCKS, REPLAY_DATES
from ingest.evaluation.run import run_evaluation
from ingest.jobs.csv_import import find_csv_files, run_import_csv
from ingest.jobs.deliver import run_deliver
from ingest.progress import Progress
from services import users
from services.auth.tokens import DEMO_USER_EMAIL, DEMO_USER_ID
from services.db import Executor, create_pool
from services.settings import Settings
from services.storage.factory import open_object_store
from services.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

DEMO_STYLE = "blend"
CSV_DIRECTORY = "demo-csv"

LABEL_SQL = """
UPDATE entities AS e SET sector = t.sector, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS t(ticker, sector)
WHERE e.ticker = t.ticker AND e.sector IS DISTINCT FROM t.sector
"""

# The demo's symbol.csv is not the market's symbol universe: if only demo symbols are flagged,
# unflag them, or every real ticker would become "unknown" to addStock (docs/api.md).
UNFLAG_UNIVERSE_SQL = """
UPDATE entities SET in_symbol_universe = false, updated_at = now()
WHERE ticker = ANY($1::text[]) AND in_symbol_universe
  AND NOT EXISTS (
      SELECT 1 FROM entities WHERE in_symbol_universe AND NOT ticker = ANY($1::text[]))
"""

LAST_EVALUATED_SQL = """
SELECT max(s.as_of) FROM entity_signals s JOIN entities e ON e.id = s.entity_id
WHERE e.ticker = ANY($1::text[])
"""

USER_ALERTS_SQL = "SELECT count(*) FROM alert_history WHERE user_id = $1"


@dataclass
class DemoSummary:
    """What one `demo` run did; `failures` makes the command exit non-zero."""

    directory: Path | None = None
    csv_rows: int = 0
    tickers: int = 0
    watched: int = 0
    evaluated: list[date] = field(default_factory=list)
    alerts: int = 0
    emails: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary_line(self) -> str:
        days = (
            f"evaluated {', '.join(d.isoformat() for d in self.evaluated)}"
            if self.evaluated
            else "already evaluated (nothing to replay)"
        )
        line = (
            f"demo: {self.tickers} synthetic tickers, {self.csv_rows:,} CSV rows in "
            f"{self.directory}, {self.watched} watched by {DEMO_USER_EMAIL}, {days}, "
            f"{self.alerts} alerts for the demo user, "
            f"{self.emails} digest email{'' if self.emails == 1 else 's'} sent, "
            f"{len(self.failures)} failures"
        )
        if self.failures:
            line += f" ({'; '.join(self.failures[:3])})"
        return line + f" in {self.seconds:.1f}s"


def demo_tickers() -> list[str]:
    return [stock.ticker for stock in DEMO_STOCKS]


def watched_tickers() -> list[str]:
    return [stock.ticker for stock in DEMO_STOCKS if stock.watched]


# Loaded means evaluated up to the newest prices of the demo user's stocks, not just that the
# user row exists: a demo run that stopped part-way must be resumed at the next start.
_DEMO_LOADED_SQL = """
SELECT coalesce((
    SELECT max(s.as_of) >= max(e.price_data_max_date)
    FROM watchlists w
    JOIN entities e ON e.id = w.entity_id
    JOIN entity_signals s ON s.entity_id = w.entity_id AND s.computed_at > w.added_at
    WHERE w.user_id = $1
), false)
"""


async def demo_loaded(db: Executor) -> bool:
    """Whether the demo data set is fully loaded (its user's stocks evaluated to the end)."""
    return bool(await db.fetchval(_DEMO_LOADED_SQL, DEMO_USER_ID))


async def run_demo(
    settings: Settings,
    dsn: str,
    *,
    store: ObjectStore | None = None,
    directory: Path | None = None,
) -> DemoSummary:
    """Write, import, label, seed the demo user and replay the evaluations (idempotent)."""
    started = time.perf_counter()
    summary = DemoSummary(directory=directory or settings.data_dir / CSV_DIRECTORY)
    assert summary.directory is not None
    counts = write_demo_csvs(summary.directory)
    summary.csv_rows = sum(counts.values())
    object_store = store if store is not None else open_object_store(settings)
    pool = await create_pool(
        dsn, min_size=1, max_size=4, statement_cache_size=settings.database_statement_cache_size
    )
    try:
        await import_demo_csvs(pool, object_store, summary)
        if not summary.failures:
            await label_and_seed(pool, summary)
            await replay_evaluations(settings, dsn, object_store, pool, summary)
            # The demo's alerts leave as they would in production: an email digest (in
            # development an .eml file in $DATA_DIR/outbox) and any webhooks.
            delivered = await run_deliver(settings, pool, dsn, Progress("demo deliver"))
            summary.emails = delivered.emails
        summary.alerts = await pool.fetchval(USER_ALERTS_SQL, DEMO_USER_ID)
    finally:
        await pool.close()
        if store is None:
            await object_store.close()
    summary.seconds = time.perf_counter() - started
    return summary


async def import_demo_csvs(pool: asyncpg.Pool, store: ObjectStore, summary: DemoSummary) -> None:
    """The CSVs through import-csv's own code: objects first, then entity rows."""
    assert summary.directory is not None
    progress = Progress("demo import-csv")
    await run_import_csv(pool, store, find_csv_files(summary.directory), progress)
    summary.failures.extend(progress.failures)
    rejected = progress.counts.get("rows rejected", 0)
    if rejected:
        summary.failures.append(f"import-csv rejected {rejected} generated rows")
    summary.tickers = len(DEMO_STOCKS)


async def label_and_seed(pool: asyncpg.Pool, summary: DemoSummary) -> None:
    """Synthetic sector labels, then the demo user, onboarded, watching the designed movers."""
    tickers = demo_tickers()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LABEL_SQL, tickers, [stock.sector for stock in DEMO_STOCKS])
    await users.ensure_user(pool, DEMO_USER_ID, DEMO_USER_EMAIL)
    await users.complete_onboarding(pool, DEMO_USER_ID, DEMO_STYLE, watched_tickers())
    await pool.execute(UNFLAG_UNIVERSE_SQL, tickers)
    summary.watched = len(watched_tickers())


def dates_to_replay(last_evaluated: date | None) -> list[date]:
    """BASELINE then the REPLAY dates, minus those already evaluated (resume, never rewind)."""
    days = [BASELINE, *REPLAY_DATES]
    return [d for d in days if last_evaluated is None or d > last_evaluated]


async def replay_evaluations(
    settings: Settings,
    dsn: str,
    store: ObjectStore,
    pool: asyncpg.Pool,
    summary: DemoSummary,
) -> None:
    """Run the real evaluator on each date not evaluated yet, oldest first."""
    tickers = demo_tickers()
    last = await pool.fetchval(LAST_EVALUATED_SQL, tickers)
    for day in dates_to_replay(last):
        result = await run_evaluation(settings, dsn, as_of=day, tickers=tickers, store=store)
        summary.evaluated.append(day)
        log.info("demo: %s", result.summary_line())
        if result.failures:
            failed = ", ".join(result.failed_tickers[:5])
            summary.failures.append(f"evaluation of {day} failed for {failed}")
            return  # later dates would alert against incomplete states
