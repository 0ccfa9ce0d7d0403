"""The outbox per channel: claims read their own partial index, retention, channels queued."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.delivery import outbox
from services.delivery.channels.email import EMAIL_SCAN_ROWS_PER_USER, EmailChannel
from services.delivery.channels.webhook import WebhookChannel
from services.delivery.registry import DeliveryChannel, configured_channels
from services.errors import ConfigurationError
from services.settings import Settings
from tests.fixtures.delivery import DeliveryWorld, deliver_once

WEBHOOK = WebhookChannel()
EMAIL = EmailChannel()

# Enough rows of the other channel that a plan reading them would show it.
OTHER_CHANNEL_ROWS = 2000


async def plan(pool: asyncpg.Pool, sql: str, *args: Any, generic: bool) -> str:
    """EXPLAIN of `sql` with `args`: a custom plan, or the generic one a cached statement uses."""
    async with pool.acquire() as conn, conn.transaction():
        if generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in rows)


def deliveries_indexes(shown: str) -> set[str]:
    """The indexes through which a plan reads deliveries (a sequential scan is none)."""
    assert "Seq Scan on deliveries" not in shown, shown
    found = re.findall(
        r"Index (?:Only )?Scan (?:Backward )?using (\w+) on deliveries"
        r"|Bitmap Index Scan on (deliveries\w*)",
        shown,
    )
    return {a or b for a, b in found}


async def history(pool: asyncpg.Pool, world: DeliveryWorld, user: UUID, pending: int) -> None:
    """OTHER_CHANNEL_ROWS finished deliveries of the user's alerts, then `pending` queued ones."""
    await world.many_alerts(user, OTHER_CHANNEL_ROWS, "OLD")
    await pool.execute("UPDATE deliveries SET status = 'delivered' WHERE user_id = $1", user)
    await world.many_alerts(user, pending, "NEW")


@pytest.mark.parametrize("generic", [False, True])
async def test_webhook_claim_reads_only_its_partial_index_beside_many_pending_emails(
    pool: asyncpg.Pool, world: DeliveryWorld, generic: bool
) -> None:
    reader = await world.user("reader@example.com")
    await world.many_alerts(reader, OTHER_CHANNEL_ROWS)
    hooked = await world.user()
    await world.endpoint(hooked, "http://127.0.0.1:9/hook")
    await history(pool, world, hooked, 20)
    await pool.execute("ANALYZE deliveries")
    shown = await plan(pool, WebhookChannel.claim_sql, "w", 60, 50, generic=generic)
    assert "Index Scan using deliveries_webhook_due on deliveries d" in shown, shown
    assert deliveries_indexes(shown) == {"deliveries_webhook_due", "deliveries_pkey"}, shown
    assert "Sort" not in shown, shown  # the index gives the claim order
    claimed = await outbox.claim(pool, WEBHOOK, "w", lease_seconds=60, limit=50)
    assert len(claimed) == 20


@pytest.mark.parametrize("generic", [False, True])
async def test_email_claim_reads_only_its_partial_indexes_beside_many_pending_webhooks(
    pool: asyncpg.Pool, world: DeliveryWorld, generic: bool
) -> None:
    hooked = await world.user()
    await world.endpoint(hooked, "http://127.0.0.1:9/hook")
    await world.many_alerts(hooked, OTHER_CHANNEL_ROWS)
    await history(pool, world, await world.user("old@example.com"), 0)
    for n in range(20):
        await world.alert(await world.user(f"r{n}@example.com"))
    await pool.execute("ANALYZE deliveries")
    shown = await plan(pool, EmailChannel.claim_sql, "w", 60, 50, generic=generic)
    # Which of the two it starts from is the planner's choice (by table size); both hold only
    # pending email rows, and the claimed rows are then updated by primary key.
    used = deliveries_indexes(shown)
    assert "deliveries_email_user" in used, shown
    assert used <= {"deliveries_email_due", "deliveries_email_user", "deliveries_pkey"}, shown
    claimed = await outbox.claim(pool, EMAIL, "w", lease_seconds=60, limit=50)
    assert len(claimed) == 20


async def test_one_webhook_claim_is_a_primary_key_probe(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    user = await world.user()
    await world.endpoint(user, "http://127.0.0.1:9/hook")
    await world.many_alerts(user, OTHER_CHANNEL_ROWS)
    await pool.execute("ANALYZE deliveries")
    some_id = await pool.fetchval("SELECT id FROM deliveries LIMIT 1")
    shown = await plan(pool, WebhookChannel.claim_one_sql or "", "w", 60, some_id, generic=True)
    assert deliveries_indexes(shown) == {"deliveries_pkey"}, shown
    claimed = await outbox.claim(pool, WEBHOOK, "w", lease_seconds=60, limit=1, only=some_id)
    assert [r["delivery_id"] for r in claimed] == [some_id]


async def test_claims_take_only_their_own_channel(pool: asyncpg.Pool, world: DeliveryWorld) -> None:
    ann = await world.user("ann@example.com")
    await world.endpoint(ann, "http://127.0.0.1:9/hook")
    for ticker in ("AAA", "BBB"):
        await world.alert(ann, ticker)
    hooks = await outbox.claim(pool, WEBHOOK, "w", lease_seconds=60, limit=10)
    emails = await outbox.claim(pool, EMAIL, "w", lease_seconds=60, limit=10)
    channels = {
        r["id"]: r["channel"] for r in await pool.fetch("SELECT id, channel FROM deliveries")
    }
    assert sorted(channels[r["delivery_id"]] for r in hooks) == ["webhook", "webhook"]
    assert sorted(channels[r["delivery_id"]] for r in emails) == ["email", "email"]


async def test_an_email_claim_takes_all_due_rows_of_the_oldest_users(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    # More due rows of one user than the claim scans per user wanted: still claimed together.
    ann = await world.user("ann@example.com")
    await world.many_alerts(ann, 3 * EMAIL_SCAN_ROWS_PER_USER)
    bob = await world.user("bob@example.com")
    await world.alert(bob)
    await pool.execute(
        "UPDATE deliveries SET next_attempt_at = now() - interval '1 hour' WHERE user_id = $1", ann
    )
    first = await outbox.claim(pool, EMAIL, "w", lease_seconds=60, limit=1)
    assert {r["user_id"] for r in first} == {ann}
    assert len(first) == 3 * EMAIL_SCAN_ROWS_PER_USER
    second = await outbox.claim(pool, EMAIL, "w", lease_seconds=60, limit=1)
    assert {r["user_id"] for r in second} == {bob}


async def test_enqueue_queues_only_the_given_channels(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    ann = await world.user("ann@example.com")
    await world.endpoint(ann, "http://127.0.0.1:9/hook")
    await world.alert(ann, "AAA", channels={DeliveryChannel.WEBHOOK})
    await world.alert(ann, "BBB", channels={DeliveryChannel.EMAIL})
    await world.alert(ann, "CCC", channels=())
    await world.alert(ann, "DDD")
    queued = await pool.fetch(
        "SELECT e.ticker, d.channel FROM deliveries d JOIN alert_history a ON a.id = d.alert_id "
        "JOIN entities e ON e.id = a.entity_id ORDER BY 1, 2"
    )
    assert [tuple(r) for r in queued] == [
        ("AAA", "webhook"),
        ("BBB", "email"),
        ("DDD", "email"),
        ("DDD", "webhook"),
    ]


def test_configured_channels_leave_out_email_only_in_production_without_smtp() -> None:
    development = Settings()
    production = dataclasses.replace(development, app_env="production")
    with_smtp = dataclasses.replace(production, smtp_url="smtp://mail.example.com:587")
    assert configured_channels(development) == frozenset(DeliveryChannel)
    # Push needs VAPID keys in production; it has none here.
    assert configured_channels(with_smtp) == {DeliveryChannel.WEBHOOK, DeliveryChannel.EMAIL}
    assert configured_channels(production) == {DeliveryChannel.WEBHOOK}


@pytest.mark.parametrize("raw", ["0", "-3", "thirty"])
def test_delivery_retention_days_is_validated_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="DELIVERY_RETENTION_DAYS"):
        Settings.from_env({"DELIVERY_RETENTION_DAYS": raw})
    assert Settings.from_env({}).delivery_retention_days == 30
    assert Settings.from_env({"DELIVERY_RETENTION_DAYS": "7"}).delivery_retention_days == 7


async def test_retention_deletes_only_old_finished_deliveries(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    delivery_settings: Settings,
) -> None:
    # Production without SMTP: nothing is sent, so the rows keep the states given here.
    settings = dataclasses.replace(delivery_settings, app_env="production")
    user = await world.user("ann@example.com")
    cases = {
        "OLDDONE": ("delivered", timedelta(days=31)),
        "OLDFAIL": ("failed", timedelta(days=31)),
        "NEWDONE": ("delivered", timedelta(days=29)),
        "NEWFAIL": ("failed", timedelta(hours=1)),
        "OLDWAIT": ("pending", timedelta(days=400)),
    }
    for ticker, (status, age) in cases.items():
        alert_id = await world.alert(user, ticker)
        await pool.execute(
            "UPDATE deliveries SET status = $2, updated_at = now() - $3::interval, "
            "created_at = now() - $3::interval, next_attempt_at = now() + interval '1 day' "
            "WHERE alert_id = $1",
            alert_id,
            status,
            age,
        )
    await deliver_once(pool, settings, database_url)
    left = await pool.fetch(
        "SELECT e.ticker FROM deliveries d JOIN alert_history a ON a.id = d.alert_id "
        "JOIN entities e ON e.id = a.entity_id ORDER BY 1"
    )
    assert [r["ticker"] for r in left] == ["NEWDONE", "NEWFAIL", "OLDWAIT"]
    # A shorter retention takes what has become old under it.
    shorter = dataclasses.replace(settings, delivery_retention_days=1)
    await deliver_once(pool, shorter, database_url)
    left = await pool.fetch(
        "SELECT e.ticker FROM deliveries d JOIN alert_history a ON a.id = d.alert_id "
        "JOIN entities e ON e.id = a.entity_id ORDER BY 1"
    )
    assert [r["ticker"] for r in left] == ["NEWFAIL", "OLDWAIT"]


async def test_retention_deletes_in_bounded_batches(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    user = await world.user("ann@example.com")
    await world.many_alerts(user, 30)
    await pool.execute(
        "UPDATE deliveries SET status = 'delivered', updated_at = now() - interval '40 days'"
    )
    assert await outbox.delete_finished(pool, older_than_days=30, limit=12) == 12
    assert await outbox.delete_finished(pool, older_than_days=30, limit=12) == 12
    assert await outbox.delete_finished(pool, older_than_days=30, limit=12) == 6
    assert await outbox.delete_finished(pool, older_than_days=30, limit=12) == 0


@pytest.mark.parametrize("generic", [False, True])
async def test_enqueue_probes_indexes_per_alert_never_scanning_a_table(
    pool: asyncpg.Pool, world: DeliveryWorld, generic: bool
) -> None:
    user = await world.user("ann@example.com")
    await world.endpoint(user, "http://127.0.0.1:9/hook")
    await world.many_alerts(user, OTHER_CHANNEL_ROWS)
    # Other users and endpoints: tables of a page or two would be read whole, rightly.
    await pool.execute(
        "WITH u AS (INSERT INTO users (id, email) SELECT gen_random_uuid(), 'u' || i || '@x.org' "
        "FROM generate_series(1, 2000) i RETURNING id) "
        "INSERT INTO webhook_endpoints (user_id, url, secret) "
        "SELECT id, 'http://127.0.0.1:9/hook', 'whsec_x' FROM u"
    )
    await pool.execute(
        "INSERT INTO push_subscriptions (user_id, slot, endpoint, p256dh, auth) "
        "SELECT id, 1, 'https://push.example.com/' || id, repeat('B', 87), repeat('a', 22) "
        "FROM users"
    )
    await pool.execute("ANALYZE")
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM alert_history LIMIT 1000")]
    shown = await plan(pool, outbox._enqueue_sql(outbox.ALL_CHANNELS), ids, generic=generic)
    assert "Seq Scan" not in shown and "Hash Join" not in shown, shown
    for index in (
        "alert_history_pkey",
        "users_pkey",
        "webhook_endpoints_user",
        "push_subscriptions_user_slot",
    ):
        assert f"using {index} on" in shown, shown


async def test_the_deliveries_page_applies_each_filter_alone_and_together(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    ann = await world.user("ann@example.com")
    await world.endpoint(ann, "http://127.0.0.1:9/hook")
    for ticker in ("AAA", "BBB"):
        await world.alert(ann, ticker)
    await pool.execute(
        "UPDATE deliveries d SET status = 'failed' FROM alert_history a, entities e "
        "WHERE a.id = d.alert_id AND e.id = a.entity_id AND e.ticker = 'AAA'"
    )
    for status, channel, expected in [
        (None, None, 4),
        ("failed", None, 2),
        (None, "email", 2),
        ("failed", "webhook", 1),
        ("pending", "email", 1),
    ]:
        page = await outbox.list_page(
            pool, ann, first=10, after=None, status=status, channel=channel
        )
        rows = page.rows
        assert len(rows) == expected, (status, channel, rows)
        assert all(status in (None, r["status"]) and channel in (None, r["channel"]) for r in rows)


async def test_a_receivers_retry_after_delays_the_next_attempt_beyond_the_schedule(
    pool: asyncpg.Pool, world: DeliveryWorld
) -> None:
    # Push services answer 429 with Retry-After: the next attempt waits for the later of the two.
    ann = await world.user()
    await world.endpoint(ann, "http://127.0.0.1:9/hook")
    await world.alert(ann, "AAA")
    await world.alert(ann, "BBB")
    claimed = await outbox.claim(pool, WEBHOOK, "w", lease_seconds=60, limit=10)
    later, sooner = (r["delivery_id"] for r in claimed)
    async with pool.acquire() as conn:
        for delivery_id, retry_after in ((later, 3600.0), (sooner, 5.0)):
            (row,) = await outbox.mark_failed_attempt(
                conn,
                [delivery_id],
                "w",
                status_code=429,
                error="HTTP 429",
                schedule=(60, 300),
                retry_after=retry_after,
            )
            assert row["status"] == "pending"
    rows = await pool.fetch(
        "SELECT id, extract(epoch FROM next_attempt_at - updated_at) AS delay FROM deliveries"
    )
    delays = {r["id"]: r["delay"] for r in rows}
    assert 3599 <= delays[later] <= 3601
    assert 59 <= delays[sooner] <= 61  # never sooner than the schedule
