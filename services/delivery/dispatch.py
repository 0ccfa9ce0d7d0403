"""Send claimed deliveries and record each outcome: webhooks one by one, email one per user.

Shared by the `deliver` job and the `testWebhook` mutation. Every outcome is written only by
the lease holder (services.deliveries), so a deliverer that lost its lease writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from services.db import Connection
from services.delivery import email, endpoints, outbox, webhooks
from services.delivery.outbox import ALL_CHANNELS, DeliveryChannel
from services.dev_secrets import kept_secret
from services.errors import BadUserInput
from services.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_DIRECTORY = "outbox"
# Sends in flight per claimed batch: a burst to one receiver should not become a flood.
SEND_CONCURRENCY = 10
EMAIL_LINK_SECRET_FILE = "email_link_secret"


@dataclass
class DispatchCounts:
    """What one pass sent; `summary` is the line the job prints."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    emails: int = 0
    endpoints_disabled: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DispatchCounts) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.emails += other.emails
        self.endpoints_disabled += other.endpoints_disabled
        self.errors.extend(other.errors)


def webhook_client() -> httpx.AsyncClient:
    """The HTTP client for receivers: redirects are failures, never followed."""
    # trust_env=False: an HTTP(S)_PROXY in the environment must not relay requests to users' URLs.
    return httpx.AsyncClient(
        follow_redirects=False, timeout=webhooks.TIMEOUT_SECONDS, trust_env=False
    )


# Why a production deliverer or evaluator queues and sends no email; said once at start.
EMAIL_NOT_CONFIGURED = (
    "email is not configured: SMTP_URL is not set and APP_ENV=production writes no .eml files, "
    "so no email deliveries are queued or sent (rows queued earlier stay pending until it is set)"
)


def email_configured(settings: Settings) -> bool:
    """SMTP_URL is set, or development/test writes `.eml` files instead."""
    return bool(settings.smtp_url) or not settings.is_production


def configured_channels(settings: Settings) -> frozenset[DeliveryChannel]:
    """The channels with a sender: the ones alerts are queued for."""
    if email_configured(settings):
        return ALL_CHANNELS
    return frozenset({DeliveryChannel.WEBHOOK})


def email_sender(settings: Settings) -> email.EmailSender | None:
    """SMTP_URL's server; `.eml` files in `$DATA_DIR/outbox` in development; None otherwise."""
    if settings.smtp_url:
        return email.SmtpSender.from_url(settings.smtp_url)
    if email_configured(settings):
        return email.EmlFileSender(Path(settings.data_dir) / OUTBOX_DIRECTORY)
    return None


def email_link_secret(settings: Settings) -> bytes | None:
    """EMAIL_LINK_SECRET, or in development a random one kept in `$DATA_DIR`."""
    if settings.email_link_secret:
        return settings.email_link_secret.encode()
    if settings.is_production:
        return None
    return kept_secret(settings.data_dir, EMAIL_LINK_SECRET_FILE).encode()


def webhook_body(row: Any, *, now: datetime) -> bytes:
    """The JSON body of a claimed webhook delivery row."""
    if row["event_type"] == "webhook.test":
        return webhooks.encode_body(webhooks.test_event(row["webhook_id"], now=now))
    return webhooks.encode_body(webhooks.alert_event(row, now=now))


async def send_webhooks(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    rows: Sequence[Any],
    *,
    worker: str,
    settings: Settings,
) -> DispatchCounts:
    """Send the claimed webhook deliveries concurrently, then record every outcome."""
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def bounded(row: Any) -> webhooks.SendResult:
        async with gate:
            return await _send_one(client, row, settings)

    results = await asyncio.gather(*(bounded(row) for row in rows))
    counts = DispatchCounts()
    succeeded = [(row, result) for row, result in zip(rows, results, strict=True) if result.ok]
    async with pool.acquire() as conn:
        if succeeded:
            async with conn.transaction():
                held = await outbox.mark_delivered(
                    conn,
                    [row["delivery_id"] for row, _ in succeeded],
                    worker,
                    [result.status_code for _, result in succeeded],
                )
                await endpoints.record_success(conn, [r["webhook_id"] for r in held])
            counts.delivered += len(held)
        for row, result in zip(rows, results, strict=True):
            if not result.ok:
                await _record_failure(conn, row, result, worker, settings, counts)
    return counts


async def _send_one(client: httpx.AsyncClient, row: Any, settings: Settings) -> webhooks.SendResult:
    now = datetime.now(UTC)
    return await webhooks.send(
        client,
        url=row["url"],
        secret=row["secret"],
        message_id=str(row["delivery_id"]),
        body=webhook_body(row, now=now),
        allow_private=settings.webhook_allow_private,
        now=now,
    )


async def _record_failure(
    conn: Connection,
    row: Any,
    result: webhooks.SendResult,
    worker: str,
    settings: Settings,
    counts: DispatchCounts,
) -> None:
    async with conn.transaction():
        outcome = await outbox.mark_failed_attempt(
            conn,
            [row["delivery_id"]],
            worker,
            status_code=result.status_code,
            error=result.error or "failed",
            schedule=settings.webhook_retry_schedule,
            # A test event is tried once: its caller is waiting for the outcome.
            permanent=result.gone or row["event_type"] == "webhook.test",
        )
        if not outcome:
            return  # the lease was lost: another deliverer owns this row now
        _count_failure(counts, outcome)
        if not await endpoints.record_failure(conn, row["webhook_id"], gone=result.gone):
            counts.endpoints_disabled += 1
    counts.errors.append(f"webhook {row['delivery_id']}: {result.error}")


def _count_failure(counts: DispatchCounts, outcome: Sequence[Any]) -> None:
    for updated in outcome:
        if updated["status"] == outbox.DeliveryStatus.FAILED:
            counts.failed += 1
        else:
            counts.retried += 1


async def send_email(
    pool: asyncpg.Pool,
    sender: email.EmailSender,
    rows: Sequence[Any],
    *,
    worker: str,
    settings: Settings,
    link_secret: bytes,
) -> DispatchCounts:
    """One message per user holding all of that user's claimed alerts; record the outcome."""
    counts = DispatchCounts()
    by_user: dict[UUID, list[Any]] = defaultdict(list)
    for row in rows:
        by_user[row["user_id"]].append(row)
    for user_id, user_rows in by_user.items():
        token = email.unsubscribe_token(user_id, link_secret)
        message = email.build_digest(
            to=user_rows[0]["email"],
            sender=settings.email_from,
            alerts=[email.DigestAlert.from_row(r) for r in user_rows],
            public_base_url=settings.public_base_url,
            unsubscribe_url=email.unsubscribe_url(settings.public_base_url, token),
        )
        ids = [r["delivery_id"] for r in user_rows]
        try:
            await sender.send(message)
        except (email.EmailDeliveryError, OSError) as exc:
            # OSError: the .eml folder is unwritable (disk full, permissions): try again later.
            permanent = isinstance(exc, email.EmailPermanentError)
            code = exc.code if isinstance(exc, email.EmailDeliveryError) else None
            async with pool.acquire() as conn, conn.transaction():
                outcome = await outbox.mark_failed_attempt(
                    conn,
                    ids,
                    worker,
                    status_code=code,
                    error=str(exc),
                    schedule=settings.webhook_retry_schedule,
                    permanent=permanent,
                )
            _count_failure(counts, outcome)
            counts.errors.append(f"email to user {user_id}: {exc}")
            continue
        async with pool.acquire() as conn, conn.transaction():
            held = len(await outbox.mark_delivered(conn, ids, worker, [None] * len(ids)))
            if held:
                await outbox.mark_digest_sent(conn, user_id)
        counts.delivered += held
        counts.emails += 1
    return counts


async def send_test_webhook(
    pool: asyncpg.Pool, user_id: UUID, raw_id: str, *, settings: Settings
) -> asyncpg.Record:
    """Queue a `webhook.test` event for the user's endpoint, send it now, return its row."""
    endpoint = await endpoints.get(pool, user_id, raw_id)
    if not endpoint["enabled"]:
        raise BadUserInput("the webhook is disabled: enable it before testing")
    async with pool.acquire() as conn:
        delivery_id = await outbox.enqueue_test(conn, user_id, endpoint["id"])
    worker = f"api:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    rows = await outbox.claim_webhooks(
        pool, worker, lease_seconds=settings.delivery_lease_seconds, limit=1, only=delivery_id
    )
    if rows:
        async with webhook_client() as client:
            await send_webhooks(pool, client, rows, worker=worker, settings=settings)
    return await outbox.get(pool, user_id, str(delivery_id))
