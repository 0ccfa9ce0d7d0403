"""Bearer-token verification (PyJWT). The user is always the token's `sub`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import jwt

from services.errors import Unauthenticated
from services.settings import Settings

DEV_SECRET_FILE = "jwt_secret"


@dataclass(frozen=True)
class Claims:
    """What we take from a verified token."""

    sub: UUID
    email: str | None


def resolve_jwt_secret(settings: Settings) -> str | None:
    """JWT_SECRET, or in development a random secret kept in `$DATA_DIR/jwt_secret`."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.is_production or settings.jwt_jwks_url or settings.jwt_jwks_file:
        return None
    path = Path(settings.data_dir) / DEV_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def issue_token(
    secret: str,
    sub: UUID | str,
    *,
    email: str | None = None,
    ttl_seconds: int = 3600,
    audience: str | None = "authenticated",
    issuer: str | None = None,
) -> str:
    """An HS256 token shaped like Supabase's (sub, email, aud, role, iat, exp)."""
    now = int(time.time())
    payload: dict[str, object] = {
        "sub": str(sub),
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if email:
        payload["email"] = email
    if audience:
        payload["aud"] = audience
    if issuer:
        payload["iss"] = issuer
    return jwt.encode(payload, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies HS256 tokens against the configured secret; raises Unauthenticated."""

    def __init__(self, settings: Settings, *, secret: str | None = None) -> None:
        self._settings = settings
        self._secret = secret if secret is not None else resolve_jwt_secret(settings)

    async def verify(self, token: str) -> Claims:
        if not self._secret:
            raise Unauthenticated("no token verification is configured")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={"require": ["sub", "exp"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return _claims(payload)


def _claims(payload: dict[str, object]) -> Claims:
    try:
        sub = UUID(str(payload["sub"]))
    except ValueError:
        raise Unauthenticated("token subject must be a UUID") from None
    email = payload.get("email")
    return Claims(sub=sub, email=email if isinstance(email, str) and email else None)
