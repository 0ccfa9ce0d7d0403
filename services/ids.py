"""Ids that arrive as GraphQL `ID` strings."""

from __future__ import annotations

from uuid import UUID

from services.errors import NotFound


def parse_owned_id(raw: str, what: str) -> UUID:
    """`raw` as a UUID; a malformed id is reported exactly like an unknown (or another user's)."""
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"{what} not found") from None
