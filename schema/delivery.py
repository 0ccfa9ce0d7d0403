"""GraphQL webhook endpoints and deliveries (the outbox as a user sees it), built from rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import strawberry

from schema.alert import Alert, PageInfo, alert_from_row
from schema.context import FieldContext, field_context
from schema.push import PushSubscription, push_subscription_from_row
from schema.rows import from_row
from services.db import Row
from services.delivery.outbox import DeliveryStatus
from services.delivery.registry import DeliveryChannel

# The one default page size of `deliveries(first:)`.
DELIVERIES_PAGE_SIZE = 20

T = TypeVar("T")


@strawberry.type
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None
    consecutive_failures: int


def webhook_from_row(row: Row) -> WebhookEndpoint:
    """A WebhookEndpoint from a webhook_endpoints row (the secret is never part of it)."""
    return from_row(WebhookEndpoint, row, id=strawberry.ID(str(row["id"])))


@strawberry.type(description="Returned only by createWebhook and rotateWebhookSecret.")
class WebhookSecret:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="whsec_…: verify each request's webhook-signature with it (Standard Webhooks)."
    )


def webhook_secret_from_row(row: Row) -> WebhookSecret:
    """The endpoint and its secret, from a row that carries `secret`."""
    return WebhookSecret(endpoint=webhook_from_row(row), secret=row["secret"])


@strawberry.type
class Delivery:
    id: strawberry.ID
    channel: DeliveryChannel
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    user_id: strawberry.Private[Any]
    alert_id: strawberry.Private[Any]
    webhook_id: strawberry.Private[Any]
    push_subscription_id: strawberry.Private[Any]

    @strawberry.field(description="The alert delivered; null for a webhook.test event.")
    async def alert(self, info: strawberry.Info) -> Alert | None:
        if self.alert_id is None:
            return None
        ctx = field_context(info)
        row = await ctx.alert(self.user_id, self.alert_id)
        return None if row is None else alert_from_row(row, ctx)

    @strawberry.field(description="The endpoint; null for email and push.")
    async def webhook(self, info: strawberry.Info) -> WebhookEndpoint | None:
        if self.webhook_id is None:
            return None
        return _optional(webhook_from_row, await field_context(info).webhook(self.webhook_id))

    @strawberry.field(description="The browser subscription; null for other channels.")
    async def push_subscription(self, info: strawberry.Info) -> PushSubscription | None:
        if self.push_subscription_id is None:
            return None
        row = await field_context(info).push_subscription(self.push_subscription_id)
        return _optional(push_subscription_from_row, row)


def delivery_from_row(row: Row) -> Delivery:
    """A Delivery from a deliveries row; nextAttemptAt only while it is pending."""
    pending = row["status"] == DeliveryStatus.PENDING
    return from_row(
        Delivery,
        row,
        id=strawberry.ID(str(row["id"])),
        next_attempt_at=row["next_attempt_at"] if pending else None,
    )


@strawberry.type
class DeliveryEdge:
    cursor: str
    node: Delivery


@strawberry.type
class DeliveryConnection:
    edges: list[DeliveryEdge]
    page_info: PageInfo


async def viewer_webhooks(ctx: FieldContext) -> list[WebhookEndpoint]:
    """The viewer's webhook endpoints, oldest first."""
    return [webhook_from_row(row) for row in await ctx.webhook_rows()]


async def viewer_deliveries(
    ctx: FieldContext,
    *,
    first: int,
    after: str | None,
    status: DeliveryStatus | None,
    channel: DeliveryChannel | None,
) -> DeliveryConnection:
    """One page of the viewer's deliveries, newest first."""
    page = await ctx.delivery_page(first, after, status, channel)
    return DeliveryConnection(
        edges=[
            DeliveryEdge(cursor=page.cursor_of(r), node=delivery_from_row(r)) for r in page.rows
        ],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )


def _optional(build: Callable[[Row], T], row: Row | None) -> T | None:
    return build(row) if row is not None else None
