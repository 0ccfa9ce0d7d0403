"""Databases on the test server: created from the migrated template, dropped after use."""

from __future__ import annotations

import asyncpg


async def admin(server_dsn: str, *statements: str) -> None:
    """Run `statements` on a connection of their own (CREATE/DROP DATABASE refuse a transaction)."""
    conn = await asyncpg.connect(server_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def clone_database(server_dsn: str, template: str, name: str) -> None:
    await admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


async def drop_database(server_dsn: str, name: str) -> None:
    """Drop `name`, disconnecting whoever is still on it."""
    await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
