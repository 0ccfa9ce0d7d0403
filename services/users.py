"""Users: upsert from token claims, settings, onboarding."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from uuid import UUID

import asyncpg

from services import watchlists
from services.db import Connection, Executor
from services.delivery.channels.email import cancel_email, reschedule_email
from services.delivery.outbox import EmailDigest
from services.email_address import storable_email
from services.errors import BadUserInput, NotFound
from services.market.states import AlertType
from services.tickers import normalize_ticker
from services.ttl_cache import TtlCache


class InvestingStyle(StrEnum):
    """How the user invests; the value is what users.investing_style stores."""

    VALUE = "value"
    GROWTH = "growth"
    BLEND = "blend"


INVESTING_STYLES = tuple(InvestingStyle)
# Every alert type, in the order settings and stats list them.
ALERT_TYPES = tuple(AlertType)
MAX_ONBOARDING_TICKERS = 50
# A user upserted this recently (same token email) is not upserted again by this process.
ENSURED_USERS_CACHE_SIZE = 10_000
ENSURED_USERS_SECONDS = 30.0

USER_COLUMNS = """id, email, investing_style, onboarded_at, alerts_enabled, alert_types,
    email_digest, created_at"""

_GET_SQL = f"""
SELECT {USER_COLUMNS} FROM users WHERE id = $1
"""  # noqa: S608

_UPSERT_SQL = f"""
INSERT INTO users AS u (id, email) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE
    SET email = coalesce(EXCLUDED.email, u.email), updated_at = now()
RETURNING {USER_COLUMNS}
"""  # noqa: S608

_UPDATE_SETTINGS_SQL = f"""
UPDATE users SET
    investing_style = coalesce($2, investing_style),
    alerts_enabled = coalesce($3, alerts_enabled),
    alert_types = coalesce($4::text[], alert_types),
    email_digest = coalesce($5, email_digest),
    updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""  # noqa: S608

# onboarded_at keeps the first completion, so re-running onboarding is idempotent.
_ONBOARD_SQL = f"""
UPDATE users SET
    investing_style = $2,
    onboarded_at = coalesce(onboarded_at, now()),
    updated_at = now()
WHERE id = $1
RETURNING {USER_COLUMNS}
"""  # noqa: S608


async def ensure_user(pool: asyncpg.Pool, user_id: UUID, email: str | None) -> asyncpg.Record:
    """The user row for a verified token, created (or its email refreshed) when needed.

    An email that is not one valid address is stored as no email.
    """
    email = storable_email(email)
    row = await pool.fetchrow(_GET_SQL, user_id)
    if row is not None and (email is None or row["email"] == email):
        return row  # the common case costs one read and takes no lock
    try:
        upserted = await pool.fetchrow(_UPSERT_SQL, user_id, email)
    except asyncpg.UniqueViolationError:
        # Another account already holds this email: keep the user, without the email.
        upserted = await pool.fetchrow(_UPSERT_SQL, user_id, None)
    assert upserted is not None
    return upserted


class EnsuredUsers:
    """Users this process ensured recently, with the email it ensured, so repeats skip the read.

    Keyed by user id with the last email applied: a token carrying another email misses and
    is upserted at once. Only an email changed elsewhere (another worker, an older token) can
    stay unapplied here, for at most `seconds`.
    """

    def __init__(
        self, maxsize: int = ENSURED_USERS_CACHE_SIZE, seconds: float = ENSURED_USERS_SECONDS
    ) -> None:
        self.seconds = seconds
        self._emails: TtlCache[UUID, tuple[str | None]] = TtlCache(maxsize)

    def recently_ensured(self, user_id: UUID, email: str | None) -> bool:
        """True when `user_id` was ensured with this `email` within the last `seconds`."""
        return self._emails.get(user_id) == (email,)

    def remember(self, user_id: UUID, email: str | None) -> None:
        """Record that `user_id` exists with `email` applied (as ensure_user just did)."""
        self._emails.put(user_id, (email,), self._emails.clock() + self.seconds)


async def get_user(db: Executor, user_id: UUID) -> asyncpg.Record:
    """The user row; NotFound when it does not exist."""
    row = await db.fetchrow(_GET_SQL, user_id)
    if row is None:
        raise NotFound("user not found")
    return row


def _check_style(style: str) -> str:
    if style not in INVESTING_STYLES:
        raise BadUserInput(f"investing style must be one of {', '.join(INVESTING_STYLES)}")
    return style


def _canonical_alert_types(types: Sequence[str]) -> list[str]:
    unknown = set(types) - set(ALERT_TYPES)
    if unknown:
        raise BadUserInput(f"unknown alert type: {', '.join(sorted(unknown))}")
    return [t for t in ALERT_TYPES if t in types]


async def update_settings(
    pool: asyncpg.Pool,
    user_id: UUID,
    *,
    investing_style: str | None = None,
    alerts_enabled: bool | None = None,
    alert_types: Sequence[str] | None = None,
    email_digest: str | None = None,
) -> asyncpg.Record:
    """Change the given settings (None leaves one as it is); returns the user row."""
    style = _check_style(investing_style) if investing_style is not None else None
    types = _canonical_alert_types(alert_types) if alert_types is not None else None
    digest = EmailDigest(email_digest) if email_digest is not None else None
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            _UPDATE_SETTINGS_SQL, user_id, style, alerts_enabled, types, digest
        )
        if row is None:
            raise NotFound("user not found")
        if digest is not None:
            await _queue_follows_digest(conn, user_id, digest)
    return row


async def set_email_digest(pool: asyncpg.Pool, user_id: UUID, digest: str) -> bool:
    """Set how often the user gets email (one-click unsubscribe); False for an unknown user."""
    try:
        await update_settings(pool, user_id, email_digest=digest)
    except NotFound:
        return False
    return True


async def _queue_follows_digest(conn: Connection, user_id: UUID, digest: EmailDigest) -> None:
    """Email already queued follows the new choice: cancelled when OFF, else rescheduled."""
    if digest == EmailDigest.OFF:
        await cancel_email(conn, user_id, "email turned off by the user")
    else:
        await reschedule_email(conn, user_id)


def normalize_onboarding_tickers(raw: Sequence[str]) -> list[str]:
    """Normalized, de-duplicated tickers (first occurrence order); 1–50 or BadUserInput."""
    tickers = list(dict.fromkeys(normalize_ticker(t) for t in raw))
    if not 1 <= len(tickers) <= MAX_ONBOARDING_TICKERS:
        raise BadUserInput(
            f"pick between 1 and {MAX_ONBOARDING_TICKERS} distinct tickers, got {len(tickers)}"
        )
    return tickers


async def complete_onboarding(
    pool: asyncpg.Pool, user_id: UUID, investing_style: str, raw_tickers: Sequence[str]
) -> asyncpg.Record:
    """Set style and onboarded_at and watch the tickers, all or nothing; safe to re-run."""
    style = _check_style(investing_style)
    tickers = normalize_onboarding_tickers(raw_tickers)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_ONBOARD_SQL, user_id, style)
        if row is None:
            raise NotFound("user not found")
        await watchlists.add_many(conn, user_id, tickers, existing_ok=True)
    return row
