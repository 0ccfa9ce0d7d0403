"""Send claimed deliveries of any channel and record each outcome: the one attempt loop.

Shared by the `deliver` job and the `testWebhook` mutation. Every outcome is written only by
the lease holder (services.delivery.outbox), so a deliverer that lost its lease writes nothing.
A batch that cannot be rendered or sent fails on its own: the other batches of the pass go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.delivery import endpoints, outbox
from services.delivery.channel import Channel, Outcome, Session, Unrenderable
from services.delivery.channels.webhook import WebhookChannel, enqueue_test
from services.delivery.registry import DeliveryChannel, channel_of
from services.errors import BadUserInput
from services.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DispatchCounts:
    """What one pass sent; `summary` is the line the job prints."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    # Messages sent per channel (an email digest carries several deliveries).
    messages: dict[str, int] = field(default_factory=dict)
    # Targets a failure retired (an endpoint disabled, a subscription deleted).
    targets_retired: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def emails(self) -> int:
        """Digest messages sent."""
        return self.messages.get(DeliveryChannel.EMAIL, 0)

    @property
    def endpoints_disabled(self) -> int:
        """Webhook endpoints a failure disabled."""
        return self.targets_retired

    def add(self, other: DispatchCounts) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        for name, sent in other.messages.items():
            self.messages[name] = self.messages.get(name, 0) + sent
        self.targets_retired += other.targets_retired
        self.errors.extend(other.errors)


async def _attempt(session: Session, batch: Sequence[Any]) -> Outcome:
    """Render and send one batch; a message that cannot be built fails at once, not later."""
    now = datetime.now(UTC)
    try:
        message = session.render(batch, now)
    except Unrenderable as exc:
        return Outcome(delivered=False, error=str(exc), permanent=True)
    return await session.send(batch, message, now)


async def send_claimed(
    pool: asyncpg.Pool,
    channel: Channel,
    session: Session,
    rows: Sequence[Any],
    *,
    worker: str,
    settings: Settings,
) -> DispatchCounts:
    """Send the claimed rows of `channel` (as its batches), then record every outcome."""
    gate = asyncio.Semaphore(channel.send_concurrency)

    async def bounded(batch: Sequence[Any]) -> Outcome:
        async with gate:
            return await _attempt(session, batch)

    batches = channel.batches(rows)
    outcomes = await asyncio.gather(*(bounded(batch) for batch in batches))
    counts = DispatchCounts()
    succeeded = [b for b, o in zip(batches, outcomes, strict=True) if o.delivered]
    async with pool.acquire() as conn:
        if succeeded:
            await _record_success(conn, channel, succeeded, outcomes, batches, worker, counts)
        for batch, outcome in zip(batches, outcomes, strict=True):
            if not outcome.delivered:
                await _record_failure(conn, channel, batch, outcome, worker, settings, counts)
    return counts


async def _record_success(
    conn: Any,
    channel: Channel,
    succeeded: Sequence[Sequence[Any]],
    outcomes: Sequence[Outcome],
    batches: Sequence[Sequence[Any]],
    worker: str,
    counts: DispatchCounts,
) -> None:
    code_of = {id(b): o.status_code for b, o in zip(batches, outcomes, strict=True)}
    ids = [row["delivery_id"] for batch in succeeded for row in batch]
    codes = [code_of[id(batch)] for batch in succeeded for _ in batch]
    async with conn.transaction():
        held = {r["id"] for r in await outbox.mark_delivered(conn, ids, worker, codes)}
        held_rows = [row for batch in succeeded for row in batch if row["delivery_id"] in held]
        await channel.delivered(conn, held_rows)
    counts.delivered += len(held)
    sent = sum(1 for batch in succeeded if any(r["delivery_id"] in held for r in batch))
    counts.messages[channel.name] = counts.messages.get(channel.name, 0) + sent


async def _record_failure(
    conn: Any,
    channel: Channel,
    batch: Sequence[Any],
    outcome: Outcome,
    worker: str,
    settings: Settings,
    counts: DispatchCounts,
) -> None:
    async with conn.transaction():
        updated = await outbox.mark_failed_attempt(
            conn,
            [row["delivery_id"] for row in batch],
            worker,
            status_code=outcome.status_code,
            error=outcome.error or "failed",
            schedule=settings.webhook_retry_schedule,
            permanent=outcome.permanent,
            retry_after=outcome.retry_after,
        )
        if not updated:
            return  # the lease was lost: another deliverer owns these rows now
        for row in updated:
            if row["status"] == outbox.DeliveryStatus.FAILED:
                counts.failed += 1
            else:
                counts.retried += 1
        if await channel.failed(conn, batch, outcome):
            counts.targets_retired += 1
    first = batch[0]["delivery_id"]
    more = f" (+{len(batch) - 1} more)" if len(batch) > 1 else ""
    counts.errors.append(f"{channel.name} {first}{more}: {outcome.error}")


async def deliver_due(
    pool: asyncpg.Pool,
    channel: Channel,
    session: Session,
    *,
    worker: str,
    settings: Settings,
    only: UUID | None = None,
) -> DispatchCounts | None:
    """Claim one batch of due rows of `channel` (or just `only`), send, record; None if none."""
    rows = await outbox.claim(
        pool,
        channel,
        worker,
        lease_seconds=settings.delivery_lease_seconds,
        limit=settings.delivery_batch_size,
        only=only,
    )
    if not rows:
        return None
    return await send_claimed(pool, channel, session, rows, worker=worker, settings=settings)


async def send_test_webhook(
    pool: asyncpg.Pool, user_id: UUID, raw_id: str, *, settings: Settings
) -> asyncpg.Record:
    """Queue a `webhook.test` event for the user's endpoint, send it now, return its row."""
    endpoint = await endpoints.get(pool, user_id, raw_id)
    if not endpoint["enabled"]:
        raise BadUserInput("the webhook is disabled: enable it before testing")
    async with pool.acquire() as conn:
        delivery_id = await enqueue_test(conn, user_id, endpoint["id"])
    worker = f"api:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    channel = channel_of(WebhookChannel.name)
    async with channel.session(settings) as session:
        if session is not None:
            await deliver_due(
                pool, channel, session, worker=worker, settings=settings, only=delivery_id
            )
    return await outbox.get(pool, user_id, str(delivery_id))
