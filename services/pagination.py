"""Opaque keyset cursors over `(sent_at, id)`: base64url of a versioned, readable payload."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

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
