"""Per-request context: pool, settings, lazily-verified viewer and fresh DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from services.auth import Claims, TokenVerifier
from services.errors import Unauthenticated
from services.settings import Settings


@dataclass
class Context:
    """Built once per HTTP request and once per subscription operation."""

    pool: asyncpg.Pool
    settings: Settings
    verifier: TokenVerifier
    authorization: str | None = None
    request: Any = None
    response: Any = None
    _claims: Claims | None = field(default=None, init=False)

    async def require_user_id(self) -> UUID:
        """The authenticated user's id; raises Unauthenticated without a valid bearer token."""
        if self._claims is None:
            token = bearer_token(self.authorization)
            if token is None:
                raise Unauthenticated("missing bearer token")
            self._claims = await self.verifier.verify(token)
        return self._claims.sub


def bearer_token(authorization: str | None) -> str | None:
    """The token from an `Authorization: Bearer …` value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
