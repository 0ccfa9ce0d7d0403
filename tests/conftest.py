"""Real PostgreSQL for every test: a migrated template per session, a fresh clone per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from migrations.runner import migrate
from services.db import create_pool, dsn_with_database, start_embedded_postgres
from tests.databases import admin, clone_database, drop_database

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """DSN of a database on the test server: `TEST_DATABASE_URL`, else an embedded one."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    dsn = start_embedded_postgres(ROOT / ".data" / "test-postgres")
    # A throwaway cluster: without fsync, the checkpoints that every DROP DATABASE forces
    # no longer stall a test's queries behind disk flushes on a busy CI machine.
    asyncio.run(
        admin(
            dsn,
            "ALTER SYSTEM SET fsync = off",
            "ALTER SYSTEM SET full_page_writes = off",
            "ALTER SYSTEM SET synchronous_commit = off",
            "SELECT pg_reload_conf()",
        )
    )
    return dsn


async def _create_template(server_dsn: str, name: str) -> None:
    await admin(server_dsn, f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(dsn_with_database(server_dsn, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    await admin(server_dsn, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')


@pytest.fixture(scope="session")
def template_database(server_dsn: str) -> Iterator[str]:
    """Name of a migrated database that tests clone; unique per pytest process."""
    name = f"mc_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_create_template(server_dsn, name))
    yield name
    asyncio.run(admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture
async def database_url(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """DSN of a fresh database cloned from the migrated template, dropped after the test."""
    name = f"mc_test_{uuid.uuid4().hex[:12]}"
    await clone_database(server_dsn, template_database, name)
    yield dsn_with_database(server_dsn, name)
    await drop_database(server_dsn, name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's own database."""
    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()
