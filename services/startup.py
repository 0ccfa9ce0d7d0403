"""Development start-up: apply migrations and load the demo data set once (`make run`)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from migrations.runner import migrate
from services.auth import DEMO_USER_ID

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODULE = "ingest.demo"


async def apply_migrations(dsn: str) -> list[str]:
    """Applies pending migrations (advisory-locked, idempotent); returns their names."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    return [f"{m.version:04d}_{m.name}" for m in applied]


# Loaded means evaluated up to the newest prices of the demo user's stocks, not just that the
# user row exists: a demo run that stopped part-way must be resumed at the next start.
_DEMO_LOADED_SQL = """
SELECT coalesce((
    SELECT max(s.last_evaluated_as_of) >= max(e.price_data_max_date)
    FROM watchlists w
    JOIN entities e ON e.id = w.entity_id
    JOIN user_entity_settings s ON s.user_id = w.user_id AND s.entity_id = w.entity_id
    WHERE w.user_id = $1
), false)
"""


async def demo_loaded(dsn: str) -> bool:
    """Whether the demo data set is fully loaded (its user's stocks evaluated to the end)."""
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(_DEMO_LOADED_SQL, DEMO_USER_ID))
    finally:
        await conn.close()


def demo_loader_available() -> bool:
    """True once `python -m ingest demo` exists (ingest/demo.py)."""
    try:
        return importlib.util.find_spec(DEMO_MODULE) is not None
    except ModuleNotFoundError:
        return False


def load_demo(dsn: str) -> bool:
    """Runs `python -m ingest demo` against `dsn` (no second embedded server); True on success."""
    env = {**os.environ, "DATABASE_URL": dsn}
    log.info("loading the demo data set (python -m ingest demo)")
    completed = subprocess.run(
        [sys.executable, "-m", "ingest", "demo"], cwd=ROOT, env=env, check=False
    )
    if completed.returncode != 0:
        log.error(
            "python -m ingest demo failed (exit %d); serving without demo data",
            completed.returncode,
        )
        return False
    return True


async def prepare_development_database(dsn: str, *, with_demo: bool) -> None:
    """Migrations, then the demo data set when asked for and not loaded yet."""
    applied = await apply_migrations(dsn)
    log.info("migrations: %s", ", ".join(applied) or "up to date")
    if not with_demo:
        return
    if await demo_loaded(dsn):
        log.info("demo data set already loaded")
    elif not demo_loader_available():
        log.info("demo data set skipped: %s does not exist yet", DEMO_MODULE)
    else:
        await asyncio.to_thread(load_demo, dsn)
