"""A user's Web Push subscriptions: register (at most 10), list, delete, retire when gone."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from uuid import UUID

import asyncpg
from py_vapid import Vapid

from services.db import Executor
from services.delivery import outbound, webhooks
from services.errors import BadUserInput, NotFound
from services.ids import parse_owned_id

# Also the CHECK on push_subscriptions.slot (migration 0015).
MAX_SUBSCRIPTIONS = 10
MAX_USER_AGENT_LENGTH = 500
# An uncompressed P-256 point, and the RFC 8291 authentication secret.
P256DH_BYTES = 65
AUTH_BYTES = 16

SUBSCRIPTION_COLUMNS = "id, user_id, endpoint, user_agent, created_at"

_LIST_SQL = f"""
SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, id
"""  # noqa: S608
# A browser that signed in as another user now belongs to this one.
_TAKE_OVER_SQL = "DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id <> $2"
# The same browser again (a page load re-registers): fresh keys, same row and slot.
_REFRESH_SQL = f"""
UPDATE push_subscriptions SET p256dh = $3, auth = $4, user_agent = $5, updated_at = now()
WHERE endpoint = $1 AND user_id = $2
RETURNING {SUBSCRIPTION_COLUMNS}
"""  # noqa: S608
# The lowest free slot, or no row when all are taken. A concurrent registration that takes the
# same slot first makes this one fail on push_subscriptions_user_slot: the caller tries again.
_INSERT_SQL = f"""
INSERT INTO push_subscriptions (user_id, slot, endpoint, p256dh, auth, user_agent)
SELECT $2, s, $1, $3, $4, $5
FROM generate_series(1, {MAX_SUBSCRIPTIONS}) AS s
WHERE NOT EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.user_id = $2 AND p.slot = s)
ORDER BY s
LIMIT 1
RETURNING {SUBSCRIPTION_COLUMNS}
"""  # noqa: S608
_BY_IDS_SQL = f"SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE id = ANY($1::uuid[])"  # noqa: S608
_DELETE_SQL = "DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2 RETURNING id"
_RETIRE_SQL = "DELETE FROM push_subscriptions WHERE id = ANY($1::uuid[])"


def _key(value: str, name: str, size: int) -> str:
    """The key as unpadded base64url, or BadUserInput when it is not `size` bytes of it."""
    text = value.strip().rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadUserInput(f"{name} must be base64url") from None
    if len(raw) != size or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise BadUserInput(f"{name} must be base64url of {size} bytes")
    return text


def check_keys(p256dh: str, auth: str) -> tuple[str, str]:
    """The subscription's keys as stored; BadUserInput unless p256dh is a P-256 point."""
    public = _key(p256dh, "p256dh", P256DH_BYTES)
    try:
        Vapid.from_raw_public(public.encode())
    except ValueError:
        raise BadUserInput("p256dh is not a P-256 public key") from None
    return public, _key(auth, "auth", AUTH_BYTES)


def check_endpoint(endpoint: str, *, allow_private: bool) -> str:
    """The endpoint stripped, checked like a webhook URL (https and public in production)."""
    try:
        return webhooks.validate_url(endpoint, allow_private=allow_private)
    except BadUserInput as exc:
        raise BadUserInput(_as_push(exc.message)) from None


def _as_push(message: str) -> str:
    return message.replace("webhook URL", "push endpoint")


def _user_agent(user_agent: str | None) -> str | None:
    text = (user_agent or "").strip()
    return text[:MAX_USER_AGENT_LENGTH] or None


async def register(
    pool: asyncpg.Pool,
    user_id: UUID,
    *,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
    allow_private: bool,
) -> asyncpg.Record:
    """Add (or refresh) the browser's subscription; BadUserInput past MAX_SUBSCRIPTIONS."""
    endpoint = check_endpoint(endpoint, allow_private=allow_private)
    public, secret = check_keys(p256dh, auth)
    agent = _user_agent(user_agent)
    # Where the host resolves is checked now and again at every send (DNS answers change).
    await outbound.resolve_public(endpoint, allow_private=allow_private)
    args = (endpoint, user_id, public, secret, agent)
    # Each lost race for a slot means another row now holds one: bounded by the slot count.
    for _ in range(MAX_SUBSCRIPTIONS + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_TAKE_OVER_SQL, endpoint, user_id)
                row = await conn.fetchrow(_REFRESH_SQL, *args)
                if row is None:
                    row = await conn.fetchrow(_INSERT_SQL, *args)
                if row is None:
                    raise BadUserInput(f"at most {MAX_SUBSCRIPTIONS} push subscriptions per user")
                return row
        except asyncpg.UniqueViolationError:
            continue
    raise BadUserInput("the push subscription could not be registered; try again")


async def list_for_user(db: Executor, user_id: UUID) -> list[asyncpg.Record]:
    """The user's subscriptions, oldest first."""
    return list(await db.fetch(_LIST_SQL, user_id))


async def by_ids(db: Executor, ids: list[UUID]) -> dict[UUID, asyncpg.Record]:
    """Subscriptions by id (the caller has already scoped the ids to one user)."""
    return {row["id"]: row for row in await db.fetch(_BY_IDS_SQL, ids)}


async def delete(db: Executor, user_id: UUID, raw_id: str) -> bool:
    """Remove the subscription and its deliveries; NOT_FOUND when it is not the user's."""
    if await db.fetchval(_DELETE_SQL, parse_owned_id(raw_id, "push subscription"), user_id) is None:
        raise NotFound("push subscription not found")
    return True


async def retire(db: Executor, subscription_ids: Sequence[UUID]) -> None:
    """The push service says these subscriptions are gone (404/410): forget them."""
    if subscription_ids:
        await db.execute(_RETIRE_SQL, list(subscription_ids))
