"""Version counters of cached API answers, bumped by triggers in the writing transactions.

`public` changes with anything a public field can show; `user:<id>` with that user's own
rows. A cached answer is served only while the counters it was built under are unchanged
(see migrations/0005_cache_versions.sql for what bumps what).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from services.db import Executor

PUBLIC = "public"

_READ_SQL = "SELECT scope, version FROM cache_versions WHERE scope = ANY($1::text[])"


def user_scope(user_id: UUID) -> str:
    """The scope of one user's own data."""
    return f"user:{user_id}"


async def read(db: Executor, scopes: Sequence[str]) -> tuple[int, ...]:
    """The current version of each scope, in order (0 for a scope never bumped)."""
    found = {row["scope"]: row["version"] for row in await db.fetch(_READ_SQL, list(scopes))}
    return tuple(found.get(scope, 0) for scope in scopes)
