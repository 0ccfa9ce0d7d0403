"""Root Query, Mutation and Subscription types."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers.context import Context
from schema.types import Health


@strawberry.type
class Query:
    @strawberry.field
    async def health(self, info: Info[Context, None]) -> Health:
        pending = await info.context.pool.fetchval(
            "SELECT count(*) FROM backfill_queue WHERE status = 'pending'"
        )
        return Health(
            ok=True,
            database=True,
            object_store=True,
            version="0.1.0",
            pending_backfills=pending,
            last_evaluation_as_of=None,
        )
