"""Health of the process's dependencies: database, object store, queue and evaluation state."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import asyncpg

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
_DISTRIBUTION = "material-changes"

_STATE_SQL = """
SELECT (SELECT count(*) FROM backfill_queue WHERE status = 'pending') AS pending_backfills,
       (SELECT max(as_of) FROM entity_signals) AS last_evaluation_as_of
"""


class Pingable(Protocol):
    async def ping(self) -> bool: ...


@dataclass(frozen=True)
class HealthReport:
    """What `health` and `GET /api/health` report; `ok` means every dependency answered."""

    ok: bool
    database: bool
    object_store: bool
    version: str
    pending_backfills: int
    last_evaluation_as_of: date | None

    def as_json(self) -> dict[str, Any]:
        """camelCase JSON, the same names as the GraphQL `Health` type."""
        data = asdict(self)
        as_of = data.pop("last_evaluation_as_of")
        return {
            "ok": data["ok"],
            "database": data["database"],
            "objectStore": data["object_store"],
            "version": data["version"],
            "pendingBackfills": data["pending_backfills"],
            "lastEvaluationAsOf": as_of.isoformat() if as_of else None,
        }


async def check_health(
    pool: asyncpg.Pool | None,
    object_store: Pingable | None,
    *,
    seconds: float = CHECK_TIMEOUT_SECONDS,
) -> HealthReport:
    """Pings the database and the object store concurrently, each with a short timeout."""
    database, store_ok = await asyncio.gather(
        _database_state(pool, seconds), _ping_store(object_store, seconds)
    )
    db_ok = database is not None
    pending, last_as_of = database if database is not None else (0, None)
    return HealthReport(
        ok=db_ok and store_ok,
        database=db_ok,
        object_store=store_ok,
        version=app_version(),
        pending_backfills=pending,
        last_evaluation_as_of=last_as_of,
    )


async def database_ready(pool: asyncpg.Pool | None, seconds: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Whether the database answers `SELECT 1` within `seconds` (readiness: can serve)."""
    if pool is None:
        return False
    try:
        async with asyncio.timeout(seconds):
            return bool(await pool.fetchval("SELECT 1", timeout=seconds) == 1)
    except Exception as exc:  # any failure means "not ready", never a 500
        log.warning("readiness: database check failed: %r", exc)
        return False


async def _database_state(
    pool: asyncpg.Pool | None, seconds: float
) -> tuple[int, date | None] | None:
    if pool is None:
        return None
    try:
        async with asyncio.timeout(seconds):
            row = await pool.fetchrow(_STATE_SQL, timeout=seconds)
    except Exception as exc:  # any failure means "not healthy", never a 500
        log.warning("health: database check failed: %r", exc)
        return None
    assert row is not None
    return int(row["pending_backfills"]), row["last_evaluation_as_of"]


async def _ping_store(store: Pingable | None, seconds: float) -> bool:
    if store is None:
        return False
    try:
        async with asyncio.timeout(seconds):
            return bool(await store.ping())
    except Exception as exc:
        log.warning("health: object store check failed: %r", exc)
        return False


@lru_cache(maxsize=1)
def app_version() -> str:
    """The installed package version, else the one in pyproject.toml."""
    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"
