"""Upgrading a database of the per-watcher layout (0001-0007) to 0008 loses nothing."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from migrations.runner import MIGRATIONS_DIR, migrate
from services.db import dsn_with_database
from tests.databases import admin, drop_database

OLD_LAYOUT_LAST = 7


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    name = f"mc_upgrade_{uuid.uuid4().hex[:12]}"
    await admin(server_dsn, f'CREATE DATABASE "{name}"')
    yield dsn_with_database(server_dsn, name)
    await drop_database(server_dsn, name)


async def test_upgrading_keeps_alerts_their_commit_order_states_and_watchlists(
    empty_database: str, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= OLD_LAYOUT_LAST:
            shutil.copy(path, old / path.name)
    conn = await asyncpg.connect(empty_database)
    try:
        await migrate(conn, old)
        user, entity = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO users (id, email) VALUES ($1, 'old@example.com')", user)
        await conn.execute("INSERT INTO entities (id, ticker) VALUES ($1, 'OLD')", entity)
        await conn.execute(
            "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $2)", user, entity
        )
        await conn.execute(
            "INSERT INTO user_entity_settings (user_id, entity_id, last_trend_position) "
            "VALUES ($1, $2, 'BELOW_200DMA')",
            user,
            entity,
        )
        # Three alerts in three transactions, numbered at commit by 0006's trigger.
        for day in (date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)):
            await conn.execute(
                "INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, "
                "headline, what_changed, why_it_matters, before_vs_now, what_didnt_change) "
                "VALUES ($1, $2, 'trend_break', $3, 'ABOVE_200DMA', 'h', 'w', 'y', 'b', 'd')",
                user,
                entity,
                day,
            )
        before = await conn.fetch("SELECT id, commit_seq FROM alert_history ORDER BY commit_seq")
        assert all(r["commit_seq"] is not None for r in before)

        applied = await migrate(conn, MIGRATIONS_DIR)
        assert applied and min(m.version for m in applied) == OLD_LAYOUT_LAST + 1

        after = await conn.fetch("SELECT id, commit_seq FROM alert_history ORDER BY commit_seq")
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert await conn.fetchval("SELECT count(*) FROM watchlists") == 1
        assert await conn.fetchval("SELECT count(*) FROM user_entity_settings") == 1
        # A new alert continues the order after the old ones.
        seq = await conn.fetchval(
            "INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, "
            "headline, what_changed, why_it_matters, before_vs_now, what_didnt_change) "
            "VALUES ($1, $2, 'trend_break', '2024-01-05', 'BELOW_200DMA', 'h', 'w', 'y', 'b', "
            "'d') RETURNING commit_seq",
            user,
            entity,
        )
        assert seq > before[-1]["commit_seq"]
    finally:
        await conn.close()
