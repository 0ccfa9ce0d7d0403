"""The email channel: one digest message per user holding all of that user's due alerts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from services.db import Connection
from services.delivery import email
from services.delivery.channel import (
    ALERT_FIELDS,
    LEASE_FREE,
    Channel,
    Outcome,
    Session,
    Unrenderable,
    claim_statement,
)
from services.dev_secrets import kept_secret
from services.email_address import parse_email_address
from services.errors import BadUserInput
from services.settings import Settings

OUTBOX_DIRECTORY = "outbox"
EMAIL_LINK_SECRET_FILE = "email_link_secret"
# An email claim looks for its users among this many of the oldest due rows per user wanted.
EMAIL_SCAN_ROWS_PER_USER = 5

# Why a production deliverer or evaluator queues and sends no email; said once at start.
EMAIL_NOT_CONFIGURED = (
    "email is not configured: SMTP_URL is not set and APP_ENV=production writes no .eml files, "
    "so no email deliveries are queued or sent (rows queued earlier stay pending until it is set)"
)

# When a user's next digest may go: now for IMMEDIATE, else 20 h / 6.5 days after the last one.
_DIGEST_DUE = """CASE u.email_digest
    WHEN 'daily' THEN greatest(now(), u.last_digest_sent_at + interval '20 hours')
    WHEN 'weekly' THEN greatest(now(), u.last_digest_sent_at + interval '156 hours')
    ELSE now() END"""

_DIGEST_SENT_SQL = "UPDATE users SET last_digest_sent_at = now() WHERE id = $1"

# A user who turns email off (or loses the address) gets no digest of what is still queued.
_CANCEL_EMAIL_SQL = """
UPDATE deliveries d SET status = 'failed', last_error = $2, locked_by = NULL,
    locked_until = NULL, updated_at = now()
WHERE d.user_id = $1 AND d.channel = 'email' AND d.status = 'pending'
"""
# A changed digest frequency reschedules what is queued.
_RESCHEDULE_EMAIL_SQL = f"""
UPDATE deliveries d SET next_attempt_at = coalesce({_DIGEST_DUE}, now()), updated_at = now()
FROM users u
WHERE u.id = $1 AND d.user_id = u.id AND d.channel = 'email' AND d.status = 'pending'
  AND d.attempts = 0
"""  # noqa: S608


def email_configured(settings: Settings) -> bool:
    """SMTP_URL is set, or development/test writes `.eml` files instead."""
    return bool(settings.smtp_url) or not settings.is_production


def email_sender(settings: Settings) -> email.EmailSender | None:
    """SMTP_URL's server; `.eml` files in `$DATA_DIR/outbox` in development; None otherwise."""
    if settings.smtp_url:
        return email.SmtpSender.from_url(settings.smtp_url)
    if email_configured(settings):
        return email.EmlFileSender(Path(settings.data_dir) / OUTBOX_DIRECTORY)
    return None


def email_link_secret(settings: Settings) -> bytes | None:
    """EMAIL_LINK_SECRET, or in development a random one kept in `$DATA_DIR`."""
    if settings.email_link_secret:
        return settings.email_link_secret.encode()
    if settings.is_production:
        return None
    return kept_secret(settings.data_dir, EMAIL_LINK_SECRET_FILE).encode()


async def cancel_email(conn: Connection, user_id: UUID, reason: str) -> None:
    """Queued email deliveries of the user become FAILED with `reason`."""
    await conn.execute(_CANCEL_EMAIL_SQL, user_id, reason)


async def reschedule_email(conn: Connection, user_id: UUID) -> None:
    """Queued, never-tried email deliveries follow the user's current digest frequency."""
    await conn.execute(_RESCHEDULE_EMAIL_SQL, user_id)


@dataclass
class EmailSession(Session):
    """One pass's sender (SMTP or .eml files) and what a digest is built with."""

    sender: email.EmailSender
    settings: Settings
    link_secret: bytes

    def render(self, batch: Sequence[Any], now: datetime) -> Any:
        user_id = batch[0]["user_id"]
        token = email.unsubscribe_token(user_id, self.link_secret)
        try:
            # An address stored before addresses were checked may hold a header or a second
            # recipient: it fails this delivery, never anyone else's.
            to = parse_email_address(batch[0]["email"])
        except BadUserInput:
            raise Unrenderable("the message could not be built: invalid email address") from None
        try:
            return email.build_digest(
                to=to,
                sender=self.settings.email_from,
                alerts=[email.DigestAlert.from_row(r) for r in batch],
                public_base_url=self.settings.public_base_url,
                unsubscribe_url=email.unsubscribe_url(self.settings.public_base_url, token),
            )
        except ValueError as exc:
            # The email package refuses header values it cannot write (a line break).
            raise Unrenderable(f"the message could not be built: {exc}") from None

    async def send(self, batch: Sequence[Any], message: Any, now: datetime) -> Outcome:
        try:
            await self.sender.send(message)
        except email.EmailDeliveryError as exc:
            return Outcome(
                delivered=False,
                status_code=exc.code,
                error=str(exc),
                permanent=isinstance(exc, email.EmailPermanentError),
            )
        except OSError as exc:
            # The .eml folder is unwritable (disk full, permissions): try again later.
            return Outcome(delivered=False, error=str(exc))
        return Outcome(delivered=True)


class EmailChannel(Channel):
    """Digest email to users with an address whose `emailDigest` is not OFF."""

    name: ClassVar[str] = "email"
    target_column: ClassVar[str | None] = None
    # The user's row is the target: `OFFSET 0` keeps it a primary-key probe per alert.
    enqueue_sql: ClassVar[str] = f"""
SELECT a.user_id, a.id, 'email', NULL::uuid, coalesce({_DIGEST_DUE}, now())
FROM a
CROSS JOIN LATERAL (
    SELECT v.email_digest, v.last_digest_sent_at FROM users v
    WHERE v.id = a.user_id AND v.email IS NOT NULL AND v.email_digest <> 'off' OFFSET 0
) u"""  # noqa: S608
    # Users whose digest window is open and who have due email rows; all of a user's due rows
    # are claimed together, so one message carries them. The users are found among the oldest
    # claimable due rows (deliveries_email_due, in order, at most EMAIL_SCAN_ROWS_PER_USER rows
    # per user wanted), so a claim reads a bounded slice of the queue, never every pending row;
    # their rows are then read by user (deliveries_email_user). $3: users wanted.
    claim_sql: ClassVar[str] = claim_statement(f"""oldest AS (
    SELECT d.user_id, d.next_attempt_at
    FROM deliveries d
    JOIN users u ON u.id = d.user_id
    WHERE d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {LEASE_FREE}
      AND u.email IS NOT NULL AND u.email_digest <> 'off'
      AND (u.email_digest = 'immediate' OR u.last_digest_sent_at IS NULL
           OR u.last_digest_sent_at <= now() - CASE u.email_digest
                WHEN 'daily' THEN interval '20 hours' ELSE interval '156 hours' END)
    ORDER BY d.next_attempt_at
    LIMIT $3 * {EMAIL_SCAN_ROWS_PER_USER}
),
due_users AS (
    SELECT user_id FROM oldest GROUP BY user_id ORDER BY min(next_attempt_at) LIMIT $3
),
due AS (
    SELECT d.id
    FROM deliveries d
    WHERE d.user_id IN (SELECT user_id FROM due_users)
      AND d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now()
      AND {LEASE_FREE}
    FOR UPDATE OF d SKIP LOCKED
)""")  # noqa: S608
    work_sql: ClassVar[str] = f"""
SELECT d.id AS delivery_id, d.attempts, u.email, u.id AS user_id, {ALERT_FIELDS}
FROM deliveries d
JOIN users u ON u.id = d.user_id
JOIN alert_history a ON a.id = d.alert_id
JOIN entities e ON e.id = a.entity_id
WHERE d.id = ANY($1::uuid[])
ORDER BY u.id, a.sent_at, a.id
"""  # noqa: S608
    # One SMTP conversation at a time, as a mail server expects from one client.
    send_concurrency: ClassVar[int] = 1
    not_configured: ClassVar[str] = EMAIL_NOT_CONFIGURED

    def configured(self, settings: Settings) -> bool:
        return email_configured(settings)

    def batches(self, rows: Sequence[Any]) -> list[list[Any]]:
        by_user: dict[UUID, list[Any]] = defaultdict(list)
        for row in rows:
            by_user[row["user_id"]].append(row)
        return list(by_user.values())

    def session(self, settings: Settings) -> AbstractAsyncContextManager[Session | None]:
        return _email_session(settings)

    async def delivered(self, conn: Connection, rows: Sequence[Any]) -> None:
        for user_id in sorted({r["user_id"] for r in rows}):
            await conn.execute(_DIGEST_SENT_SQL, user_id)


@asynccontextmanager
async def _email_session(settings: Settings) -> AsyncIterator[Session | None]:
    sender = email_sender(settings)
    secret = email_link_secret(settings)
    yield None if sender is None or secret is None else EmailSession(sender, settings, secret)
