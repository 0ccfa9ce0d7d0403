"""`deliver`: the outbox drained to a real HTTP receiver, a real SMTP server and .eml files."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import logging
from collections.abc import Callable
from datetime import date

import asyncpg
import pytest
from standardwebhooks import Webhook

from ingest.evaluation.run import run_evaluation
from ingest.jobs.deliver import run_deliver
from ingest.progress import Progress
from services.delivery import dispatch, endpoints
from services.delivery.registry import configured_channels
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fixtures.delivery import DeliveryWorld, deliver_once, outbox_files
from tests.fixtures.evaluation import D0, D1, watched_scenario
from tests.fixtures.smtp_server import Server
from tests.fixtures.webhook_receiver import Receiver, Reply


def verified(receiver: Receiver, secret: str) -> list[dict[str, object]]:
    """Every request's body, each one checked with the receiver side of Standard Webhooks."""
    return [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]


async def until(check: Callable[[], bool], task: asyncio.Task[object]) -> None:
    """Wait (at most 10 s) for `check`, surfacing a failure of the deliverer `task`."""
    for _ in range(200):
        if check():
            return
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_evaluated_alerts_are_queued_with_them_and_delivered_signed_once(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
    eval_store: LocalObjectStore,
    eval_settings: Settings,
) -> None:
    _, user = await watched_scenario(pool, eval_store)
    await pool.execute("UPDATE users SET email = 'ann@example.com' WHERE id = $1", user)
    endpoint = await world.endpoint(user, receiver.url())
    for day in (D0, D1):
        await run_evaluation(eval_settings, database_url, as_of=day, store=eval_store)
    alerts = await pool.fetch(
        "SELECT id, headline FROM alert_history WHERE user_id = $1 ORDER BY sent_at, id", user
    )
    assert alerts
    queued = await world.deliveries(user)
    # Exactly one webhook and one email delivery per alert, written in the alert's commit.
    for channel in ("webhook", "email"):
        assert sorted(d["alert_id"] for d in queued if d["channel"] == channel) == sorted(
            a["id"] for a in alerts
        )
    assert {d["status"] for d in queued} == {"pending"}

    counts = await deliver_once(pool, delivery_settings, database_url)
    assert (counts.delivered, counts.emails) == (2 * len(alerts), 1)
    events = verified(receiver, endpoint["secret"])
    assert [e["type"] for e in events] == ["alert.created"] * len(alerts)
    by_id = {a["id"]: a for a in alerts}
    webhook_ids = {d["alert_id"]: str(d["id"]) for d in queued if d["channel"] == "webhook"}
    for request, event in zip(receiver.requests, events, strict=True):
        data = event["data"]
        assert isinstance(data, dict)
        alert_id = next(k for k in by_id if str(k) == data["alertId"])
        assert data["headline"] == by_id[alert_id]["headline"] and data["ticker"] == "ACME"
        assert request.headers["webhook-id"] == webhook_ids[alert_id]
    (eml,) = outbox_files(delivery_settings)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",))
    assert text is not None
    for alert in alerts:
        assert alert["headline"] in text.get_content()
    assert {d["status"] for d in await world.deliveries(user)} == {"delivered"}

    # Re-running the evaluation and the deliverer sends nothing again.
    await run_evaluation(eval_settings, database_url, as_of=D1, store=eval_store)
    again = await deliver_once(pool, delivery_settings, database_url)
    assert again.delivered == 0 and len(receiver.requests) == len(alerts)
    assert len(outbox_files(delivery_settings)) == 1


async def test_a_500_is_retried_later_with_the_same_webhook_id(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    user = await world.user()
    endpoint = await world.endpoint(user, receiver.url())
    await world.alert(user)
    receiver.script(Reply(status=500, body=b"database down"))

    first = await deliver_once(pool, delivery_settings, database_url)
    assert (first.delivered, first.retried) == (0, 1)
    (row,) = await world.deliveries(user)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_status_code"] == 500 and "database down" in row["last_error"]
    delay = await pool.fetchval(
        "SELECT extract(epoch FROM next_attempt_at - updated_at) FROM deliveries"
    )
    assert 59 <= delay <= 61  # the first delay of WEBHOOK_RETRY_SCHEDULE
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 0  # not due

    await world.make_due()
    second = await deliver_once(pool, delivery_settings, database_url)
    assert second.delivered == 1
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {str(row["id"])} and len(receiver.requests) == 2
    assert len(verified(receiver, endpoint["secret"])) == 2
    (done,) = await world.deliveries(user)
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("delivered", 2, 200)
    state = await world.endpoint_state(endpoint["id"])
    assert state["consecutive_failures"] == 0 and state["last_success_at"] is not None


async def test_after_the_last_retry_the_delivery_is_failed(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    settings = dataclasses.replace(delivery_settings, webhook_retry_schedule=(1, 1))
    user = await world.user()
    await world.endpoint(user, receiver.url())
    await world.alert(user)
    receiver.script(*[Reply(status=503)] * 3)
    for _ in range(3):
        await world.make_due()
        await deliver_once(pool, settings, database_url)
    (row,) = await world.deliveries(user)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    await world.make_due()
    await deliver_once(pool, settings, database_url)
    assert len(receiver.requests) == 3  # a FAILED delivery is not tried again


async def test_410_disables_the_endpoint_at_once(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    user = await world.user()
    endpoint = await world.endpoint(user, receiver.url())
    await world.alert(user, "AAA")
    receiver.script(Reply(status=410))
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.endpoints_disabled == 1 and counts.failed == 1
    state = await world.endpoint_state(endpoint["id"])
    assert not state["enabled"] and state["disabled_reason"] == "the receiver answered 410 Gone"
    # A disabled endpoint gets no new deliveries.
    await world.alert(user, "BBB")
    assert [d["channel"] for d in await world.deliveries(user)] == ["webhook"]


async def test_twenty_consecutive_failures_disable_and_re_enabling_resets_the_count(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    user = await world.user()
    endpoint = await world.endpoint(user, receiver.url())
    await pool.execute(
        "UPDATE webhook_endpoints SET consecutive_failures = 19 WHERE id = $1", endpoint["id"]
    )
    await world.alert(user)
    receiver.script(Reply(status=500))
    counts = await deliver_once(pool, delivery_settings, database_url)
    assert counts.endpoints_disabled == 1
    state = await world.endpoint_state(endpoint["id"])
    assert not state["enabled"]
    assert state["disabled_reason"] == "20 consecutive failed attempts"
    # Its pending delivery waits while it is disabled, and goes once it is enabled again.
    await world.make_due()
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 0
    again = await endpoints.set_enabled(pool, user, str(endpoint["id"]), True)
    assert again["enabled"] and again["consecutive_failures"] == 0
    assert again["disabled_reason"] is None
    assert (await deliver_once(pool, delivery_settings, database_url)).delivered == 1


async def test_timeouts_and_redirects_are_failed_attempts(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    user = await world.user()
    await world.endpoint(user, receiver.url())
    await world.alert(user)
    receiver.script(Reply(status=302, location="/elsewhere"))
    await deliver_once(pool, delivery_settings, database_url)
    (row,) = await world.deliveries(user)
    assert row["status"] == "pending" and row["last_status_code"] == 302
    assert "redirect not followed" in row["last_error"]
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_a_private_address_is_refused_at_send_in_production_mode(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:
    user = await world.user()
    await world.endpoint(user, receiver.url())  # allowed when created in development
    await world.alert(user)
    strict = dataclasses.replace(delivery_settings, webhook_allow_private=False)
    await deliver_once(pool, strict, database_url)
    (row,) = await world.deliveries(user)
    assert row["status"] == "pending" and row["last_error"].startswith("refused")
    assert receiver.requests == []


async def test_one_email_per_user_holds_all_their_alerts_and_no_email_without_address(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    smtp_server: Server,
    delivery_settings: Settings,
) -> None:
    settings = dataclasses.replace(
        delivery_settings, smtp_url=f"smtp://127.0.0.1:{smtp_server.port}"
    )
    ann = await world.user("ann@example.com")
    bob = await world.user("bob@example.com")
    nobody = await world.user(None)
    for ticker in ("AAA", "BBB", "CCC"):
        await world.alert(ann, ticker)
    await world.alert(bob, "DDD")
    await world.alert(nobody, "EEE")
    assert await world.deliveries(nobody) == []

    counts = await deliver_once(pool, settings, database_url)
    assert counts.emails == 2 and counts.delivered == 4
    by_rcpt = {m.rcpt_tos[0]: m for m in smtp_server.handler.received}
    assert set(by_rcpt) == {"ann@example.com", "bob@example.com"}
    ann_mail = email.message_from_bytes(
        by_rcpt["ann@example.com"].data, policy=email.policy.default
    )
    body = ann_mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for ticker in ("AAA", "BBB", "CCC"):
        assert f"{ticker} fell below its 200-day average" in text
    assert "DDD" not in text
    assert ann_mail["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe?token=")
    assert await pool.fetchval("SELECT last_digest_sent_at FROM users WHERE id = $1", ann)


async def test_daily_digest_waits_20_hours_after_the_last_one(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    delivery_settings: Settings,
) -> None:
    ann = await world.user("ann@example.com", digest="daily")
    await world.alert(ann, "AAA")
    assert (await deliver_once(pool, delivery_settings, database_url)).emails == 1
    await world.alert(ann, "BBB", as_of=date(2024, 6, 3))
    assert (await deliver_once(pool, delivery_settings, database_url)).emails == 0
    await pool.execute(
        "UPDATE users SET last_digest_sent_at = now() - interval '21 hours' WHERE id = $1", ann
    )
    await world.make_due()
    assert (await deliver_once(pool, delivery_settings, database_url)).emails == 1
    assert len(outbox_files(delivery_settings)) == 2


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [("451 4.3.0 try again later", "pending", 451), ("550 5.1.1 no such user", "failed", 550)],
)
async def test_smtp_4xx_is_retried_and_5xx_is_failed(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    smtp_server: Server,
    delivery_settings: Settings,
    reply: str,
    status: str,
    code: int,
) -> None:
    settings = dataclasses.replace(
        delivery_settings, smtp_url=f"smtp://127.0.0.1:{smtp_server.port}"
    )
    smtp_server.handler.rcpt_reply = reply
    ann = await world.user("ann@example.com")
    await world.alert(ann)
    await deliver_once(pool, settings, database_url)
    (row,) = await world.deliveries(ann)
    assert (row["status"], row["last_status_code"], row["attempts"]) == (status, code, 1)


async def test_production_without_smtp_queues_no_email_and_says_so_once_at_start(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    production = dataclasses.replace(delivery_settings, app_env="production")
    ann = await world.user("ann@example.com")
    await world.endpoint(ann, receiver.url())
    # Queued before: email was configured then (or this is an older deliverer's row).
    earlier = await world.alert(ann, "AAA")
    # Queued the way the evaluation queues under this configuration: no email row at all.
    await world.alert(ann, "BBB", channels=configured_channels(production))
    queued = await world.deliveries(ann)
    assert sorted((d["channel"], d["alert_id"] == earlier) for d in queued) == [
        ("email", True),
        ("webhook", False),
        ("webhook", True),
    ]
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="ingest.jobs.deliver"):
        task = asyncio.create_task(
            run_deliver(production, pool, database_url, Progress("deliver"), follow=True, stop=stop)
        )
        await until(lambda: len(receiver.requests) == 2, task)  # the webhooks still go
        await world.alert(ann, "CCC", channels=configured_channels(production))
        await until(lambda: len(receiver.requests) == 3, task)  # a pass woken by the NOTIFY
        stop.set()
        await task
    said = [r.getMessage() for r in caplog.records if "email is not configured" in r.getMessage()]
    assert len(said) == 1 and "no email deliveries are queued" in said[0]
    # The row queued earlier is not sent nor tried: it waits for SMTP_URL.
    (row,) = [d for d in await world.deliveries(ann) if d["channel"] == "email"]
    assert row["status"] == "pending" and row["attempts"] == 0 and row["alert_id"] == earlier
    assert outbox_files(production) == []


async def test_turning_email_off_cancels_what_is_queued(
    pool: asyncpg.Pool, database_url: str, world: DeliveryWorld, delivery_settings: Settings
) -> None:
    from services import users

    ann = await world.user("ann@example.com", digest="weekly")
    await pool.execute("UPDATE users SET last_digest_sent_at = now() WHERE id = $1", ann)
    await world.alert(ann)
    (row,) = await world.deliveries(ann)
    wait = await pool.fetchval(
        "SELECT extract(epoch FROM next_attempt_at - now()) / 3600 FROM deliveries"
    )
    assert 155 < wait <= 156  # WEEKLY: 6.5 days after the last digest
    await users.update_settings(pool, ann, email_digest="off")
    (row,) = await world.deliveries(ann)
    assert row["status"] == "failed" and row["last_error"] == "email turned off by the user"
    assert (await deliver_once(pool, delivery_settings, database_url)).emails == 0


async def test_a_webhook_test_event_is_signed_and_tried_once(
    pool: asyncpg.Pool,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
) -> None:

    user = await world.user()
    endpoint = await world.endpoint(user, receiver.url())
    row = await dispatch.send_test_webhook(
        pool, user, str(endpoint["id"]), settings=delivery_settings
    )
    assert row["status"] == "delivered" and row["attempts"] == 1
    (event,) = verified(receiver, endpoint["secret"])
    assert event == {
        "type": "webhook.test",
        "timestamp": event["timestamp"],
        "data": {"endpointId": str(endpoint["id"])},
    }
    receiver.script(Reply(status=500))
    failed = await dispatch.send_test_webhook(
        pool, user, str(endpoint["id"]), settings=delivery_settings
    )
    assert failed["status"] == "failed" and failed["last_status_code"] == 500
    assert json.loads(receiver.requests[1].body)["type"] == "webhook.test"


@pytest.mark.parametrize(
    "stored", ["c@example.com\r\nBcc: spy@evil.test", "c@example.com, spy@evil.test"]
)
async def test_a_message_that_cannot_be_built_fails_only_its_delivery_and_once(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    delivery_settings: Settings,
    stored: str,
) -> None:
    # Stored before addresses were checked at sign-in: it must not hold up anyone's mail.
    bad = await world.user(stored)
    ann = await world.user("ann@example.com")
    await world.alert(bad, "AAA")
    await world.alert(ann, "BBB")

    counts = await deliver_once(pool, delivery_settings, database_url)

    assert counts.emails == 1
    (eml,) = outbox_files(delivery_settings)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com" and "Bcc" not in message
    (failed,) = await world.deliveries(bad)
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert "could not be built" in failed["last_error"]
    await world.make_due()
    assert (await deliver_once(pool, delivery_settings, database_url)).failed == 0


async def test_a_receivers_body_reaches_the_log_escaped_on_one_line(
    pool: asyncpg.Pool,
    database_url: str,
    world: DeliveryWorld,
    receiver: Receiver,
    delivery_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A receiver's error body forged a whole log line (and colours) in the text log.
    user = await world.user()
    await world.endpoint(user, receiver.url())
    await world.alert(user)
    receiver.script(Reply(status=500, body=b"down\n2026-01-01 ERROR forged line\x1b[31m"))

    with caplog.at_level(logging.INFO, logger="ingest.jobs.deliver"):
        await deliver_once(pool, delivery_settings, database_url)

    (said,) = [r.getMessage() for r in caplog.records if "attempt failed" in r.getMessage()]
    assert "\n" not in said and "\x1b" not in said
    assert "down\\n2026-01-01 ERROR forged line\\x1b[31m" in said
