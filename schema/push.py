"""GraphQL Web Push subscriptions (the browsers that get alerts as notifications), from rows."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.context import FieldContext
from schema.rows import from_row
from services.db import Row


@strawberry.type(description="A browser subscribed to alerts as Web Push notifications.")
class PushSubscription:
    id: strawberry.ID
    endpoint: str = strawberry.field(description="The push service URL the browser gave.")
    user_agent: str | None
    created_at: datetime


def push_subscription_from_row(row: Row) -> PushSubscription:
    """A PushSubscription from a push_subscriptions row (its keys are never part of it)."""
    return from_row(PushSubscription, row, id=strawberry.ID(str(row["id"])))


async def viewer_push_subscriptions(ctx: FieldContext) -> list[PushSubscription]:
    """The viewer's push subscriptions, oldest first."""
    return [push_subscription_from_row(row) for row in await ctx.push_subscription_rows()]
