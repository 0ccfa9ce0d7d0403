"""`python -m migrations [up|status]`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from migrations.runner import MigrationError, migrate, status
from services.db import resolve_database_url
from services.errors import ConfigurationError
from services.settings import Settings


async def _run(command: str, dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if command == "up":
            applied = await migrate(conn)
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
            print(f"migrations up: {names}")
        else:
            for row in await status(conn):
                when = row.applied_at.isoformat() if row.applied_at else "pending"
                print(f"{row.version:04d}_{row.name}\t{when}")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrations", description=__doc__)
    parser.add_argument("command", nargs="?", default="up", choices=["up", "status"])
    args = parser.parse_args(argv)
    try:
        dsn = resolve_database_url(Settings.from_env())
        asyncio.run(_run(args.command, dsn))
    except (ConfigurationError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
