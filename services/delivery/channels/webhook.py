"""The webhook channel: one signed POST per delivery to each enabled endpoint of the user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import httpx

from services.db import Connection, Executor
from services.delivery import endpoints, outbound, webhooks
from services.delivery.channel import (
    ALERT_FIELDS,
    LEASE_FREE,
    Channel,
    Outcome,
    Session,
    claim_statement,
)
from services.settings import Settings

_TEST_EVENT = "webhook.test"

_ENQUEUE_TEST_SQL = """
INSERT INTO deliveries (user_id, channel, webhook_id, event_type)
VALUES ($1, 'webhook', $2, 'webhook.test')
RETURNING id
"""
_ENDPOINT_ENABLED_SQL = "SELECT enabled FROM webhook_endpoints WHERE id = $1"


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client for receivers: checked addresses only, redirects never followed."""
    return outbound.receiver_client(
        allow_private=settings.webhook_allow_private, timeout=webhooks.TIMEOUT_SECONDS
    )


def webhook_body(row: Any, *, now: datetime) -> bytes:
    """The JSON body of a claimed webhook delivery row."""
    if row["event_type"] == _TEST_EVENT:
        return webhooks.encode_body(webhooks.test_event(row["webhook_id"], now=now))
    return webhooks.encode_body(webhooks.alert_event(row, now=now))


async def enqueue_test(conn: Connection, user_id: Any, endpoint_id: Any) -> Any:
    """A `webhook.test` delivery for the endpoint, due now."""
    return await conn.fetchval(_ENQUEUE_TEST_SQL, user_id, endpoint_id)


@dataclass
class WebhookSession(Session):
    """One pass's HTTP client and the address policy it sends under."""

    client: httpx.AsyncClient
    allow_private: bool

    def render(self, batch: Sequence[Any], now: datetime) -> bytes:
        return webhook_body(batch[0], now=now)

    async def send(self, batch: Sequence[Any], message: Any, now: datetime) -> Outcome:
        row = batch[0]
        result = await webhooks.send(
            self.client,
            url=row["url"],
            secret=row["secret"],
            message_id=str(row["delivery_id"]),
            body=message,
            allow_private=self.allow_private,
            now=now,
        )
        return Outcome(
            delivered=result.ok,
            status_code=result.status_code,
            error=None if result.ok else result.error or "failed",
            # A test event is tried once: its caller is waiting for the outcome.
            permanent=result.gone or row["event_type"] == _TEST_EVENT,
            target_gone=result.gone,
        )


class WebhookChannel(Channel):
    """Standard Webhooks POSTs to the user's enabled endpoints; 410 or 20 failures disable one."""

    name: ClassVar[str] = "webhook"
    target_column: ClassVar[str | None] = "webhook_id"
    # `OFFSET 0` keeps the LATERAL a probe of webhook_endpoints_user per alert.
    enqueue_sql: ClassVar[str] = """
SELECT a.user_id, a.id, 'webhook', w.id, now()
FROM a
CROSS JOIN LATERAL (
    SELECT e.id FROM webhook_endpoints e WHERE e.user_id = a.user_id AND e.enabled OFFSET 0
) w"""
    # Rows of enabled endpoints only (a disabled endpoint's rows wait for re-enabling), read
    # from deliveries_webhook_due in its order: pending rows of other channels are not in it.
    claim_sql: ClassVar[str] = claim_statement(f"""due AS (
    SELECT d.id
    FROM deliveries d
    JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.enabled
    WHERE d.channel = 'webhook' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {LEASE_FREE}
    ORDER BY d.next_attempt_at, d.id
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)""")  # noqa: S608
    # testWebhook's event, sent at once: a primary-key probe.
    claim_one_sql: ClassVar[str | None] = claim_statement(f"""due AS (
    SELECT d.id
    FROM deliveries d
    JOIN webhook_endpoints w ON w.id = d.webhook_id AND w.enabled
    WHERE d.id = $3 AND d.channel = 'webhook' AND d.status = 'pending'
      AND d.next_attempt_at <= now() AND {LEASE_FREE}
    FOR UPDATE OF d SKIP LOCKED
)""")  # noqa: S608
    work_sql: ClassVar[str] = f"""
SELECT d.id AS delivery_id, d.user_id, d.event_type, d.attempts, d.webhook_id, w.url,
       w.secret, {ALERT_FIELDS}
FROM deliveries d
JOIN webhook_endpoints w ON w.id = d.webhook_id
LEFT JOIN alert_history a ON a.id = d.alert_id
LEFT JOIN entities e ON e.id = a.entity_id
WHERE d.id = ANY($1::uuid[])
ORDER BY d.next_attempt_at, d.id
"""  # noqa: S608

    def session(self, settings: Settings) -> AbstractAsyncContextManager[Session | None]:
        return _webhook_session(settings)

    async def delivered(self, conn: Connection, rows: Sequence[Any]) -> None:
        await endpoints.record_success(conn, [r["webhook_id"] for r in rows])

    async def failed(self, conn: Connection, batch: Sequence[Any], outcome: Outcome) -> bool:
        still_enabled = await endpoints.record_failure(
            conn, batch[0]["webhook_id"], gone=outcome.target_gone
        )
        return not still_enabled

    async def redeliver_refusal(self, db: Executor, row: Any) -> str | None:
        if not await db.fetchval(_ENDPOINT_ENABLED_SQL, row["webhook_id"]):
            return "the webhook is disabled: enable it before redelivering"
        return None


@asynccontextmanager
async def _webhook_session(settings: Settings) -> AsyncIterator[Session | None]:
    async with webhook_client(settings) as client:
        yield WebhookSession(client, settings.webhook_allow_private)
