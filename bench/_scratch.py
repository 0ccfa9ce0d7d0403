"""Scratch databases for benchmarks: a fresh, migrated database, dropped when the bench ends."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from migrations.runner import migrate
from services.db import dsn_with_database, resolve_database_url
from services.settings import Settings


def server_dsn() -> str:
    """TEST_DATABASE_URL, else DATABASE_URL, else the embedded server under ./.data."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return url or resolve_database_url(Settings.from_env({"DATA_DIR": ".data"}))


@asynccontextmanager
async def scratch_database(
    server: str, prefix: str = "mc_bench", *, migrated: bool = True
) -> AsyncIterator[str]:
    """The DSN of a new database on `server` (migrated unless told not to); dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        dsn = dsn_with_database(server, name)
        if migrated:
            conn = await asyncpg.connect(dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        yield dsn
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(server: str, statement: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()
