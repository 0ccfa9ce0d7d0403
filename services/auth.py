"""Bearer-token verification (PyJWT). The user is always the token's `sub`."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class Claims:
    """What we take from a verified token."""

    sub: UUID
    email: str | None


class TokenVerifier:
    """Verifies HS256 (JWT_SECRET) and RS256/ES256 (JWKS) tokens; raises Unauthenticated."""

    async def verify(self, token: str) -> Claims:  # pragma: no cover - replaced by the auth work
        raise NotImplementedError
