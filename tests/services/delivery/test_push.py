"""Web Push through the outbox against a real push service on loopback and real PostgreSQL.

The push service (tests/fakes/push_service.py) verifies each request's VAPID JWT and decrypts
its body with the subscription's private key, as a browser would; nothing here is mocked.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import asyncpg
import httpx
import pytest
from py_vapid import Vapid

from services.delivery import push_subscriptions
from services.delivery.channels import push
from services.delivery.registry import DeliveryChannel, configured_channels
from services.settings import Settings
from tests.fakes.push_service import FakePushService, FakeSubscription, PushReply
from tests.fixtures.delivery import DeliveryWorld, deliver_once

PUSH_ONLY = {DeliveryChannel.PUSH}


async def subscribed(
    pool: asyncpg.Pool, user_id: uuid.UUID, browser: FakeSubscription
) -> asyncpg.Record:
    return await push_subscriptions.register(
        pool,
        user_id,
        endpoint=browser.endpoint,
        p256dh=browser.p256dh,
        auth=browser.auth,
        user_agent="test browser",
        allow_private=True,
    )


async def push_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT d.*, extract(epoch FROM d.next_attempt_at - now()) AS due_in "
            "FROM deliveries d WHERE channel = 'push' ORDER BY created_at, id"
        )
    )


async def test_an_alert_reaches_each_subscription_encrypted_and_vapid_signed(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
) -> None:
    user = await world.user()
    phone, laptop = push_service.subscribe(), push_service.subscribe()
    await subscribed(pool, user, phone)
    await subscribed(pool, user, laptop)
    bystander = await world.user()  # no subscription: no push row
    alert_id = await world.alert(user, "ACME", channels=PUSH_ONLY)
    await world.alert(bystander, "ACME", channels=PUSH_ONLY)
    assert len(await push_rows(pool)) == 2

    started = time.time()
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.delivered == 2 and counts.messages == {"push": 2}, counts

    messages = push_service.accepted()
    assert sorted(m.path for m in messages) == sorted([phone.path, laptop.path])
    public_key = push.application_server_key(delivery_settings)
    for message in messages:
        assert message.data == {
            "type": "alert.created",
            "alertId": str(alert_id),
            "ticker": "ACME",
            "headline": "ACME fell below its 200-day average",
            "url": f"{delivery_settings.public_base_url}/stocks/ACME",
        }
        assert message.claims is not None
        assert message.claims["aud"] == push_service.origin
        assert started < message.claims["exp"] <= started + 24 * 3600
        assert message.claims["sub"] == delivery_settings.vapid_subject
        assert message.vapid_key == public_key  # the key browsers subscribed with
        assert message.headers["ttl"] == "86400"
        assert message.headers["content-encoding"] == "aes128gcm"
        assert len(message.body) <= 4096
    assert [(r["status"], r["last_status_code"]) for r in await push_rows(pool)] == [
        ("delivered", 201),
        ("delivered", 201),
    ]


async def test_a_long_headline_is_cut_so_the_payload_stays_within_3_kb(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
) -> None:
    user = await world.user()
    await subscribed(pool, user, push_service.subscribe())
    await world.alert(user, "LONG", headline="Ünïcödé headline " * 400, channels=PUSH_ONLY)
    await deliver_once(pool, delivery_settings, database_url)
    (message,) = push_service.accepted()
    assert message.payload is not None and len(message.payload) <= push.MAX_PAYLOAD_BYTES
    assert message.data["headline"].startswith("Ünïcödé headline") and message.data[
        "headline"
    ].endswith("…")


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_deleted_with_its_deliveries(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
    status: int,
) -> None:
    user = await world.user()
    gone, alive = push_service.subscribe(), push_service.subscribe()
    gone.script(PushReply(status))
    await subscribed(pool, user, gone)
    kept = await subscribed(pool, user, alive)
    await world.alert(user, channels=PUSH_ONLY)
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.delivered == 1 and counts.targets_retired == 1
    left = await pool.fetch("SELECT id FROM push_subscriptions")
    assert [r["id"] for r in left] == [kept["id"]]
    rows = await push_rows(pool)
    assert [(r["push_subscription_id"], r["status"]) for r in rows] == [(kept["id"], "delivered")]
    # The next alert goes only to the subscription that is left.
    await world.alert(user, "NEXT", channels=PUSH_ONLY)
    assert len(await push_rows(pool)) == 2


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_waits_for_retry_after_then_delivers(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
    form: str,
) -> None:
    in_two_hours = datetime.now(UTC) + timedelta(hours=2)
    retry_after = "7200" if form == "seconds" else format_datetime(in_two_hours, usegmt=True)
    user = await world.user()
    browser = push_service.subscribe()
    browser.script(PushReply(429, retry_after=retry_after))
    await subscribed(pool, user, browser)
    await world.alert(user, channels=PUSH_ONLY)
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.retried == 1 and counts.targets_retired == 0
    (row,) = await push_rows(pool)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 429)
    # The schedule says 60 s; the push service asked for two hours.
    assert 7100 < float(row["due_in"]) <= 7200
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 0
    await world.make_due()
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 1
    assert [m.path for m in push_service.accepted()] == [browser.path]


@pytest.mark.parametrize(
    ("reply", "due_in"),
    [(PushReply(500), 60), (PushReply(503, retry_after="900"), 900), (PushReply(502), 60)],
)
async def test_5xx_retries_on_the_outbox_schedule(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
    reply: PushReply,
    due_in: int,
) -> None:
    user = await world.user()
    browser = push_service.subscribe()
    browser.script(reply)
    await subscribed(pool, user, browser)
    await world.alert(user, channels=PUSH_ONLY)
    assert (await deliver_once(pool, delivery_settings, database_url)).retried == 1
    (row,) = await push_rows(pool)
    assert (row["status"], row["last_status_code"]) == ("pending", reply.status)
    assert due_in - 30 < float(row["due_in"]) <= due_in
    await world.make_due()
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 1
    assert await pool.fetchval("SELECT count(*) FROM push_subscriptions") == 1


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_other_4xx_fail_the_delivery_and_keep_the_subscription(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
    status: int,
) -> None:
    user = await world.user()
    browser = push_service.subscribe()
    browser.script(PushReply(status, body=b"nope"))
    await subscribed(pool, user, browser)
    await world.alert(user, channels=PUSH_ONLY)
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.failed == 1 and counts.retried == 0
    (row,) = await push_rows(pool)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 1, status)
    assert row["last_error"] == f"HTTP {status}: nope"
    assert await pool.fetchval("SELECT count(*) FROM push_subscriptions") == 1


async def test_a_private_endpoint_is_not_contacted_in_production(
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    delivery_settings: Settings,
    push_service: FakePushService,
) -> None:
    """A subscription stored while allowed (or a name that now resolves privately) is re-checked."""
    user = await world.user()
    await subscribed(pool, user, push_service.subscribe())
    await world.alert(user, channels=PUSH_ONLY)
    strict = dataclasses.replace(delivery_settings, webhook_allow_private=False)
    counts = await deliver_once(pool, strict, database_url)
    assert counts.retried == 1 and push_service.messages == []
    (row,) = await push_rows(pool)
    assert row["last_error"] == "refused: push endpoint must use https"


def test_production_without_vapid_keys_queues_no_push(delivery_settings: Settings) -> None:
    production = dataclasses.replace(delivery_settings, app_env="production", smtp_url=None)
    assert DeliveryChannel.PUSH not in configured_channels(production)
    keyed = dataclasses.replace(production, vapid_private_key=push.new_private_key())
    assert DeliveryChannel.PUSH in configured_channels(keyed)


def _signed_request(
    browser: FakeSubscription, claims: dict[str, Any], key: Vapid | None = None
) -> tuple[dict[str, str], bytes]:
    vapid = key or Vapid.from_raw(push.new_private_key().encode())
    headers = push.request_headers(str(vapid.sign(claims)["Authorization"]))
    body = push.encrypt(
        json.dumps({"x": 1}).encode(),
        endpoint=browser.endpoint,
        p256dh=browser.p256dh,
        auth=browser.auth,
    )
    return headers, body


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "https://push.example.com"}, "Audience"),
        ({"exp": int(time.time()) + 25 * 3600}, "24 hours"),
        ({"exp": int(time.time()) - 60}, "expired"),
    ],
)
async def test_the_push_service_refuses_a_wrong_vapid_jwt(
    push_service: FakePushService, claims: dict[str, Any], why: str
) -> None:
    """The loopback push service really checks the JWT, so passing tests mean a valid one."""
    browser = push_service.subscribe()
    good = {"aud": push_service.origin, "exp": int(time.time()) + 3600, "sub": "mailto:a@b.io"}
    headers, body = _signed_request(browser, {**good, **claims})
    async with httpx.AsyncClient() as client:
        response = await client.post(browser.endpoint, content=body, headers=headers)
    assert response.status_code == 403 and why in response.text, response.text
    # The same request with good claims passes, and a key that did not sign is refused.
    headers, body = _signed_request(browser, good)
    async with httpx.AsyncClient() as client:
        assert (
            await client.post(browser.endpoint, content=body, headers=headers)
        ).status_code == 201
        other = Vapid.from_raw(push.new_private_key().encode())
        forged = headers["authorization"].rsplit("k=", 1)[0] + "k=" + push.public_key_of(other)
        response = await client.post(
            browser.endpoint, content=body, headers={**headers, "authorization": forged}
        )
    assert response.status_code == 403


async def test_a_payload_for_other_keys_is_refused(push_service: FakePushService) -> None:
    browser, stranger = push_service.subscribe(), push_service.subscribe()
    good = {"aud": push_service.origin, "exp": int(time.time()) + 3600, "sub": "mailto:a@b.io"}
    headers, body = _signed_request(stranger, good)
    async with httpx.AsyncClient() as client:
        response = await client.post(browser.endpoint, content=body, headers=headers)
    assert response.status_code == 400 and "cannot decrypt" in response.text


@pytest.mark.parametrize("headline", ['"quoted" ' * 600, "é" * 4000, "\\" * 3000, "x" * 2993])
def test_the_payload_keeps_the_longest_headline_that_fits_in_3_kb(headline: str) -> None:
    row = {"id": uuid.uuid4(), "ticker": "ACME", "headline": headline}
    body = push.alert_payload(row, public_base_url="https://app.example.com")
    kept = json.loads(body)["headline"]
    assert len(body) <= push.MAX_PAYLOAD_BYTES and kept.endswith("…")
    assert headline.startswith(kept[:-1])
    # One more character of the headline would not have fitted.
    message = json.loads(body)
    message["headline"] = headline[: len(kept)] + "…"
    encoded = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) > push.MAX_PAYLOAD_BYTES
