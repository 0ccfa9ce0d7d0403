"""Keyset pages newest first by `(timestamp, id)`, with opaque cursors (versioned base64url)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.errors import BadUserInput

_PREFIX = "v1|"


def encode_cursor(sent_at: datetime, row_id: UUID) -> str:
    """The cursor that points just after the row `(sent_at, id)` in newest-first order."""
    payload = f"{_PREFIX}{sent_at.isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


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


# Sorts after every real row, so the first page needs no separate statement.
_BEFORE_EVERYTHING = (datetime.fromisoformat("9999-12-31T00:00:00+00:00"), UUID(int=2**128 - 1))


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows, newest first by (`key` column, id), and whether more follow."""

    rows: list[asyncpg.Record]
    has_next_page: bool
    key: str

    def cursor_of(self, row: asyncpg.Record) -> str:
        """The opaque cursor of one of this page's rows."""
        return encode_cursor(row[self.key], row["id"])

    @property
    def end_cursor(self) -> str | None:
        return self.cursor_of(self.rows[-1]) if self.rows else None


def position(after: str | None) -> tuple[datetime, UUID]:
    """Where a page starts: just after the `after` cursor, or before everything."""
    return decode_cursor(after) if after is not None else _BEFORE_EVERYTHING


def page_of(rows: list[asyncpg.Record], first: int, key: str) -> KeysetPage:
    """The page from `first + 1` fetched rows (the extra one only says more follow)."""
    return KeysetPage(rows=rows[:first], has_next_page=len(rows) > first, key=key)
