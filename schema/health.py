"""GraphQL Health: the same report as GET /api/health."""

from __future__ import annotations

from datetime import date

import strawberry


@strawberry.type
class Health:
    ok: bool
    database: bool
    object_store: bool
    version: str
    pending_backfills: int
    last_evaluation_as_of: date | None
