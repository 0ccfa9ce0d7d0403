"""A user's webhook endpoints: create (at most 5), list, enable, rotate, delete, outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from services.db import Connection, Executor, lock_for_transaction
from services.delivery import outbound, webhooks
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id

MAX_ENDPOINTS = 5
MAX_DESCRIPTION_LENGTH = 500
# Consecutive failed attempts, with no success between them, that disable an endpoint.
MAX_CONSECUTIVE_FAILURES = 20

ENDPOINT_COLUMNS = """id, user_id, url, description, enabled, disabled_reason,
    consecutive_failures, last_success_at, last_failure_at, created_at"""

_LIST_SQL = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE user_id = $1 ORDER BY created_at, id
"""  # noqa: S608
_GET_SQL = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND user_id = $2"  # noqa: S608
_BY_IDS_SQL = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ANY($1::uuid[])"  # noqa: S608
_COUNT_SQL = "SELECT count(*) FROM webhook_endpoints WHERE user_id = $1"
_INSERT_SQL = f"""
INSERT INTO webhook_endpoints (user_id, url, description, secret) VALUES ($1, $2, $3, $4)
RETURNING {ENDPOINT_COLUMNS}, secret
"""  # noqa: S608
_DELETE_SQL = "DELETE FROM webhook_endpoints WHERE id = $1 AND user_id = $2 RETURNING id"
# Re-enabling starts the failure count again; disabling by hand says so.
_SET_ENABLED_SQL = f"""
UPDATE webhook_endpoints SET
    enabled = $3,
    disabled_reason = CASE WHEN $3 THEN NULL ELSE 'disabled by the user' END,
    consecutive_failures = CASE WHEN $3 THEN 0 ELSE consecutive_failures END,
    updated_at = now()
WHERE id = $1 AND user_id = $2
RETURNING {ENDPOINT_COLUMNS}
"""  # noqa: S608
_ROTATE_SQL = f"""
UPDATE webhook_endpoints SET secret = $3, updated_at = now() WHERE id = $1 AND user_id = $2
RETURNING {ENDPOINT_COLUMNS}, secret
"""  # noqa: S608
_SUCCESS_SQL = """
UPDATE webhook_endpoints SET consecutive_failures = 0, last_success_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[])
"""
# $2: the receiver answered 410 Gone, which disables at once.
_FAILURE_SQL = """
UPDATE webhook_endpoints SET
    consecutive_failures = consecutive_failures + 1,
    last_failure_at = now(),
    enabled = enabled AND NOT $2 AND consecutive_failures + 1 < $3,
    disabled_reason = CASE
        WHEN NOT enabled THEN disabled_reason
        WHEN $2 THEN 'the receiver answered 410 Gone'
        WHEN consecutive_failures + 1 >= $3
            THEN format('%s consecutive failed attempts', consecutive_failures + 1)
        ELSE disabled_reason END,
    updated_at = now()
WHERE id = $1
RETURNING enabled
"""


def check_description(description: str | None) -> str | None:
    """Trimmed description (None when blank); BadUserInput when too long."""
    if description is None or not description.strip():
        return None
    text = description.strip()
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise BadUserInput(f"description must be at most {MAX_DESCRIPTION_LENGTH} characters")
    return text


async def create(
    pool: asyncpg.Pool,
    user_id: UUID,
    url: str,
    description: str | None,
    *,
    allow_private: bool,
) -> asyncpg.Record:
    """A new endpoint with a fresh secret (the returned row carries it, shown only now)."""
    url = webhooks.validate_url(url, allow_private=allow_private)
    text = check_description(description)
    await outbound.resolve_public(url, allow_private=allow_private)
    async with pool.acquire() as conn, conn.transaction():
        # One user's creates serialise here, so the limit holds under concurrent requests.
        await lock_for_transaction(conn, f"webhooks:{user_id}")
        if await conn.fetchval(_COUNT_SQL, user_id) >= MAX_ENDPOINTS:
            raise BadUserInput(f"at most {MAX_ENDPOINTS} webhook endpoints per user")
        row = await conn.fetchrow(_INSERT_SQL, user_id, url, text, webhooks.new_secret())
        assert row is not None  # INSERT … RETURNING always returns the row
        return row


async def list_for_user(db: Executor, user_id: UUID) -> list[asyncpg.Record]:
    """The user's endpoints, oldest first."""
    return list(await db.fetch(_LIST_SQL, user_id))


async def get(db: Executor, user_id: UUID, raw_id: str) -> asyncpg.Record:
    """The user's endpoint; NOT_FOUND for a malformed, unknown or another user's id."""
    row = await db.fetchrow(_GET_SQL, parse_owned_id(raw_id, "webhook"), user_id)
    if row is None:
        raise NotFound("webhook not found")
    return row


async def by_ids(db: Executor, ids: list[UUID]) -> dict[UUID, asyncpg.Record]:
    """Endpoints by id (the caller has already scoped the ids to one user)."""
    return {row["id"]: row for row in await db.fetch(_BY_IDS_SQL, ids)}


async def delete(db: Executor, user_id: UUID, raw_id: str) -> bool:
    """Remove the endpoint and its deliveries; NOT_FOUND when it is not the user's."""
    if await db.fetchval(_DELETE_SQL, parse_owned_id(raw_id, "webhook"), user_id) is None:
        raise NotFound("webhook not found")
    return True


async def set_enabled(db: Executor, user_id: UUID, raw_id: str, enabled: bool) -> asyncpg.Record:
    """Switch the endpoint on or off; switching on resets its failure count."""
    row = await db.fetchrow(_SET_ENABLED_SQL, parse_owned_id(raw_id, "webhook"), user_id, enabled)
    if row is None:
        raise NotFound("webhook not found")
    return row


async def rotate_secret(db: Executor, user_id: UUID, raw_id: str) -> asyncpg.Record:
    """A new secret for the endpoint (returned once); the old one stops verifying at once."""
    row = await db.fetchrow(
        _ROTATE_SQL, parse_owned_id(raw_id, "webhook"), user_id, webhooks.new_secret()
    )
    if row is None:
        raise NotFound("webhook not found")
    return row


async def record_success(conn: Connection, endpoint_ids: Sequence[UUID]) -> None:
    """A 2xx: the failure streaks of these endpoints end."""
    if endpoint_ids:
        await conn.execute(_SUCCESS_SQL, sorted(set(endpoint_ids)))


async def record_failure(conn: Connection, endpoint_id: UUID, *, gone: bool) -> bool:
    """A failed attempt; returns whether the endpoint is still enabled afterwards."""
    enabled = await conn.fetchval(_FAILURE_SQL, endpoint_id, gone, MAX_CONSECUTIVE_FAILURES)
    return bool(enabled)
