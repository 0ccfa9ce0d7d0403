"""Migrations apply to an empty database, twice without change, and guard their checksums."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from migrations.runner import (
    EARLIER_CHECKSUMS,
    MIGRATIONS_DIR,
    MigrationError,
    load_migrations,
    migrate,
    status,
)
from services.db import dsn_with_database


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    name = f"mc_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_all_migrations_apply_to_empty_database_twice(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        first = await migrate(conn)
        assert [m.version for m in first] == [m.version for m in await status(conn)]
        assert await migrate(conn) == []
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "users",
            "entities",
            "watchlists",
            "user_entity_settings",
            "entity_signals",
            "alert_history",
            "backfill_queue",
        } <= tables
        assert all(row.applied_at is not None for row in await status(conn))
    finally:
        await conn.close()


async def test_edited_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    conn = await asyncpg.connect(empty_database)
    try:
        await migrate(conn, tmp_path)
        first = sorted(tmp_path.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_a_comment_only_edit_still_verifies_against_the_earlier_checksum(
    empty_database: str,
) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        await migrate(conn)
        for version, earlier in EARLIER_CHECKSUMS.items():
            [checksum] = earlier
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", version, checksum
            )
        assert await migrate(conn) == []
        assert all(row.applied_at is not None for row in await status(conn))
        # Only the listed checksums: any other text of the same migration is still refused.
        await conn.execute("UPDATE schema_migrations SET checksum = 'other' WHERE version = 1")
        with pytest.raises(MigrationError, match="0001_initial.sql was edited"):
            await migrate(conn)
    finally:
        await conn.close()


def test_earlier_checksums_name_existing_migrations_and_differ_from_the_current_text() -> None:
    current = {m.version: m.checksum for m in load_migrations()}
    for version, earlier in EARLIER_CHECKSUMS.items():
        assert version in current and current[version] not in earlier


async def test_pending_backfill_is_unique_per_ticker(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO backfill_queue (ticker) VALUES ('AAPL')")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute("INSERT INTO backfill_queue (ticker) VALUES ('AAPL')")
    await pool.execute("UPDATE backfill_queue SET status = 'failed'")
    await pool.execute("INSERT INTO backfill_queue (ticker) VALUES ('AAPL')")


async def test_latest_evaluation_date_is_an_index_probe(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch("EXPLAIN SELECT max(as_of) FROM entity_signals")
    plan = "\n".join(row[0] for row in rows)
    assert "entity_signals_as_of" in plan
