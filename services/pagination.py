"""Keyset pages newest first, with opaque cursors (versioned base64url).

Two keys: `(timestamp, id)` (v1 cursors) and a unique sequence number such as an alert's
commit order (v2 cursors).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.errors import BadUserInput

_PREFIX = "v1|"
_SEQ_PREFIX = "v2|"
# Sorts after every real sequence number (bigint), so the first page needs no other statement.
LAST_SEQ = 2**63 - 1


def check_page_size(size: int, name: str, maximum: int) -> int:
    """`size` when it is within 1..maximum, else BadUserInput naming the argument."""
    if not 1 <= size <= maximum:
        raise BadUserInput(f"{name} must be between 1 and {maximum}, got {size}")
    return size


def encode_cursor(sent_at: datetime, row_id: UUID) -> str:
    """The cursor that points just after the row `(sent_at, id)` in newest-first order."""
    return _b64(f"{_PREFIX}{sent_at.isoformat()}|{row_id}")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """`(sent_at, id)` from a cursor; BadUserInput when it was not made by `encode_cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        if not payload.startswith(_PREFIX):
            raise ValueError("unknown cursor version")
        stamp, _, raw_id = payload[len(_PREFIX) :].partition("|")
        sent_at = datetime.fromisoformat(stamp)
        if sent_at.tzinfo is None:
            raise ValueError("cursor time has no offset")
        return sent_at, UUID(raw_id)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("malformed cursor: pass an endCursor from a previous page") from None


def encode_seq_cursor(seq: int) -> str:
    """The cursor that points just after the row numbered `seq` in newest-first order."""
    return _b64(f"{_SEQ_PREFIX}{seq}")


def decode_seq_cursor(cursor: str) -> int:
    """The sequence number in a cursor; BadUserInput when `encode_seq_cursor` did not make it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        if not payload.startswith(_SEQ_PREFIX):
            raise ValueError("unknown cursor version")
        seq = int(payload[len(_SEQ_PREFIX) :])
        if not 0 <= seq <= LAST_SEQ:
            raise ValueError("cursor out of range")
        return seq
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("malformed cursor: pass an endCursor from a previous page") from None


def seq_position(after: str | None) -> int:
    """Where a page of sequence-numbered rows starts: just after `after`, or before all."""
    return decode_seq_cursor(after) if after is not None else LAST_SEQ


def _b64(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


# Sorts after every real row, so the first page needs no separate statement.
_BEFORE_EVERYTHING = (datetime.fromisoformat("9999-12-31T00:00:00+00:00"), UUID(int=2**128 - 1))


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows, newest first by `key` (and id), and whether more follow."""

    rows: list[asyncpg.Record]
    has_next_page: bool
    key: str

    def cursor_of(self, row: asyncpg.Record) -> str:
        """The opaque cursor of one of this page's rows."""
        value = row[self.key]
        if isinstance(value, int):
            return encode_seq_cursor(value)
        return encode_cursor(value, row["id"])

    @property
    def end_cursor(self) -> str | None:
        return self.cursor_of(self.rows[-1]) if self.rows else None


def position(after: str | None) -> tuple[datetime, UUID]:
    """Where a page starts: just after the `after` cursor, or before everything."""
    return decode_cursor(after) if after is not None else _BEFORE_EVERYTHING


def page_of(rows: list[asyncpg.Record], first: int, key: str) -> KeysetPage:
    """The page from `first + 1` fetched rows (the extra one only says more follow)."""
    return KeysetPage(rows=rows[:first], has_next_page=len(rows) > first, key=key)
