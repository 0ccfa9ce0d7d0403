"""The channel registry is the one list: the database's channel names and the enum follow it."""

from __future__ import annotations

import asyncpg

from services.delivery.outbox import DELIVERY_COLUMNS, _enqueue_sql
from services.delivery.registry import ALL_CHANNELS, CHANNELS, DeliveryChannel, channel_of


async def test_the_database_knows_exactly_the_registered_channels(pool: asyncpg.Pool) -> None:
    stored = {r["name"] for r in await pool.fetch("SELECT name FROM delivery_channels")}
    assert stored == {channel.name for channel in CHANNELS}


async def test_an_unregistered_channel_cannot_be_stored(pool: asyncpg.Pool) -> None:
    user = await pool.fetchval("INSERT INTO users (id) VALUES (gen_random_uuid()) RETURNING id")
    try:
        await pool.execute(
            "INSERT INTO deliveries (user_id, channel, event_type, alert_id) "
            "VALUES ($1, 'pigeon', 'alert.created', NULL)",
            user,
        )
    except asyncpg.IntegrityConstraintViolationError as exc:
        assert "delivery_channels" in str(exc) or "deliveries_" in str(exc)
    else:
        raise AssertionError("a delivery on an unknown channel was stored")


def test_the_graphql_enum_has_one_member_per_channel() -> None:
    assert [m.value for m in DeliveryChannel] == [c.name for c in CHANNELS]
    assert {m.name for m in DeliveryChannel} == {c.name.upper() for c in CHANNELS}
    assert all(channel_of(c.name) is c for c in CHANNELS)


def test_each_target_column_is_listed_and_filled_only_for_its_channel() -> None:
    sql = _enqueue_sql(ALL_CHANNELS)
    for channel in CHANNELS:
        assert channel.enqueue_sql in sql
        if channel.target_column is not None:
            assert f"d.{channel.target_column}" in DELIVERY_COLUMNS
            assert f"CASE WHEN q.channel = '{channel.name}' THEN q.target_id END" in sql
