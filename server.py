"""`python server.py`: serve the API (with `--demo` for development) or print a dev token."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from migrations.runner import MigrationError, migrate
from services.auth.tokens import DEMO_USER_EMAIL, DEMO_USER_ID, issue_token, resolve_jwt_secret
from services.db import resolve_database_url
from services.errors import ConfigurationError
from services.logs import configure_logging
from services.settings import Settings
from web.app import create_app, tune_garbage_collector
from web.metrics import MULTIPROC_DIR_VARIABLE, multiprocess_directory
from web.operation_guards import MAX_REQUEST_BYTES
from web.shutdown import GoingAwayWebSocketProtocol

ROOT = Path(__file__).resolve().parent
MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600
DEMO_TOKEN_TTL_SECONDS = 7 * 24 * 3600


def _invoked_as(script: str, fallback: str) -> str:
    return script if Path(sys.argv[0]).name == script else fallback


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # The console script shows its own name; `python server.py` otherwise.
        prog=_invoked_as("material-changes", "python server.py"),
        description="Serve the Material Changes GraphQL API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="development: load the demo data set once and print the demo user's token",
    )
    commands = parser.add_subparsers(dest="command")
    token = commands.add_parser("token", help="print a signed development JWT")
    token.add_argument("--sub", required=True, help="user id (UUID)")
    token.add_argument("--email")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings)
        if args.command == "token":
            print(dev_token(settings, args.sub, email=args.email, ttl=args.ttl))
            return 0
        return serve(settings, host=args.host, port=args.port, workers=args.workers, demo=args.demo)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def dev_token(settings: Settings, sub: str, *, email: str | None, ttl: int) -> str:
    """A signed HS256 token for `sub`; refused in production."""
    if settings.is_production:
        raise ConfigurationError("`token` is disabled when APP_ENV=production")
    try:
        user_id = UUID(sub)
    except ValueError:
        raise ConfigurationError(f"--sub must be a UUID, got {sub!r}") from None
    if not 1 <= ttl <= MAX_TOKEN_TTL_SECONDS:
        raise ConfigurationError(f"--ttl must be between 1 and {MAX_TOKEN_TTL_SECONDS} seconds")
    secret = resolve_jwt_secret(settings)
    if not secret:
        raise ConfigurationError(
            "`token` signs with JWT_SECRET; set it (JWT_JWKS_URL/JWT_JWKS_FILE keys cannot sign)"
        )
    return issue_token(
        secret,
        user_id,
        email=email,
        ttl_seconds=ttl,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def serve(settings: Settings, *, host: str, port: int, workers: int, demo: bool) -> int:
    """Prepare the database (development), print where to go, run uvicorn until Ctrl-C."""
    import uvicorn

    if workers < 1:
        raise ConfigurationError(f"--workers must be >= 1, got {workers}")
    if demo and settings.is_production:
        raise ConfigurationError("--demo is a development option; unset APP_ENV=production")
    # Built first so bad CORS/JWKS configuration fails before the database is touched.
    app = create_app(settings)
    demo_token = (
        dev_token(settings, str(DEMO_USER_ID), email=DEMO_USER_EMAIL, ttl=DEMO_TOKEN_TTL_SECONDS)
        if demo
        else None
    )
    try:
        dsn = resolve_database_url(settings)
        if not settings.is_production:
            asyncio.run(prepare_development_database(dsn, with_demo=demo))
    except (OSError, asyncpg.PostgresError, MigrationError) as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    # Workers inherit the resolved DSN, so they share the one embedded server started here.
    os.environ["DATABASE_URL"] = dsn
    _announce(host, port, demo_token)
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done; with
    # SIGTERM's default action that would end the process as killed, not as exited 0.
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    websockets: dict[str, Any] = {
        "ws": GoingAwayWebSocketProtocol,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # Alerts are a few hundred bytes; a zlib stream per socket costs ~40 KB of memory
        # (1,000 subscribers: RSS 206 → 167 MB, bench/subscriptions.py), so it is opt-in.
        "ws_per_message_deflate": settings.websocket_compression,
        # The same cap as an HTTP body: a bigger message is closed with 1009 before it is read
        # into memory (uvicorn's default would accept 16 MiB per frame).
        "ws_max_size": MAX_REQUEST_BYTES,
    }
    if workers == 1:
        tune_garbage_collector()
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)  # one process: its own default registry
        uvicorn.run(app, host=host, port=port, log_config=None, **websockets)
        return 0
    # Before the workers start: they choose prometheus_client's multiprocess mode on import.
    with multiprocess_directory(settings.prometheus_multiproc_dir):
        uvicorn.run(
            "web.app:app_factory",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            app_dir=str(ROOT),
            **websockets,
        )
    return 0


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations (advisory-locked, idempotent); returns their names."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    return [f"{m.version:04d}_{m.name}" for m in applied]


async def prepare_development_database(dsn: str, *, with_demo: bool) -> None:
    """Migrations, then (with --demo) the demo data set unless it is already loaded."""
    applied = await apply_migrations(dsn)
    print(f"migrations: {', '.join(applied) or 'up to date'}", flush=True)
    if with_demo:
        await asyncio.to_thread(load_demo, dsn)


def load_demo(dsn: str) -> bool:
    """`python -m ingest demo --if-needed` against `dsn` (no second embedded server)."""
    completed = subprocess.run(
        [sys.executable, "-m", "ingest", "demo", "--if-needed"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": dsn},
        check=False,
    )
    if completed.returncode != 0:
        print(
            f"warning: python -m ingest demo failed (exit {completed.returncode}); "
            "serving without demo data",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def _announce(host: str, port: int, demo_token: str | None) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    print(f"GraphiQL: http://{shown_host}:{port}/graphql", flush=True)
    if demo_token:
        print(f"Demo user {DEMO_USER_ID} bearer token (7 days):", flush=True)
        print(f"Authorization: Bearer {demo_token}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
