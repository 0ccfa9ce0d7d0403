"""Bearer-token verification (PyJWT). The user is always the token's `sub`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

import jwt

from services.auth.jwks import ASYMMETRIC_ALGORITHMS, JwksKeys
from services.dev_secrets import kept_secret
from services.email_address import storable_email
from services.errors import Unauthenticated
from services.settings import Settings
from services.ttl_cache import TtlCache

DEV_SECRET_FILE = "jwt_secret"
# Clock skew tolerated on exp/iat/nbf between the issuer and this server.
LEEWAY_SECONDS = 30
# Verified tokens remembered per process (each request re-sends the same token): entries
# live until the token's `exp`, and at most this long, so a revoked JWKS key stops
# working within a minute.
VERIFIED_TOKEN_CACHE_SIZE = 4096
VERIFIED_TOKEN_CACHE_SECONDS = 60.0
# The demo data set's user (`python -m ingest demo`, `make run` prints a token for it).
DEMO_USER_ID = UUID("00000000-0000-4000-8000-000000000001")
DEMO_USER_EMAIL = "demo@example.com"


@dataclass(frozen=True)
class Claims:
    """What we take from a verified token."""

    sub: UUID
    email: str | None
    # Unix seconds of `exp`: a live subscription ends when its token does.
    expires_at: float | None = None


def resolve_jwt_secret(settings: Settings) -> str | None:
    """JWT_SECRET, or in development a random secret kept in `$DATA_DIR/jwt_secret`."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.is_production or settings.jwt_jwks_url or settings.jwt_jwks_file:
        return None
    return kept_secret(settings.data_dir, DEV_SECRET_FILE)


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
    """Verifies bearer tokens: HS256 with the shared secret, RS*/ES* with the JWKS keys.

    The algorithm in the token header picks the key source, and the key must be of that
    algorithm's type, so an HS256 token "signed" with a public key or `alg: none` fails.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        secret: str | None = None,
        jwks: JwksKeys | None = None,
        leeway_seconds: int = LEEWAY_SECONDS,
    ) -> None:
        self._settings = settings
        self._secret = secret if secret is not None else resolve_jwt_secret(settings)
        self._jwks = jwks if jwks is not None else _jwks_from_settings(settings)
        self._leeway = leeway_seconds
        # Keyed by the whole token: another token for the same sub is verified on its own.
        self._verified: TtlCache[str, Claims] = TtlCache(VERIFIED_TOKEN_CACHE_SIZE)

    @property
    def configured(self) -> bool:
        return bool(self._secret or self._jwks)

    async def verify(self, token: str) -> Claims:
        """The token's claims; raises Unauthenticated for anything not valid right now."""
        claims = self._verified.get(token)
        if claims is not None:
            return claims
        payload = await self._decode(token)
        claims = _claims(payload)
        # Cached no later than `exp` itself (the leeway only applies to a full verification).
        deadline = min(_expiry(payload), self._verified.clock() + VERIFIED_TOKEN_CACHE_SECONDS)
        self._verified.put(token, claims, deadline)
        return claims

    async def _decode(self, token: str) -> dict[str, object]:
        """The verified payload (exp checked, sub present); raises Unauthenticated."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token: malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise Unauthenticated("invalid token: the header has no algorithm")
        key = await self._key_for(algorithm, header.get("kid"))
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={"require": ["sub", "exp"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return payload

    async def _key_for(self, algorithm: str, kid: object) -> str | jwt.PyJWK:
        if algorithm == "HS256":
            if not self._secret:
                raise Unauthenticated("HS256 tokens are not accepted by this server")
            return self._secret
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated(f"unsupported token algorithm {algorithm!r}")
        if self._jwks is None:
            raise Unauthenticated(f"{algorithm} tokens are not accepted by this server")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("invalid token: kid must be a string")
        return await self._jwks.key_for(kid, algorithm)


def _jwks_from_settings(settings: Settings) -> JwksKeys | None:
    if not (settings.jwt_jwks_url or settings.jwt_jwks_file):
        return None
    return JwksKeys(
        url=settings.jwt_jwks_url,
        file=settings.jwt_jwks_file,
        cache_seconds=settings.jwt_jwks_cache_seconds,
    )


def _expiry(payload: dict[str, object]) -> float:
    """`exp` as PyJWT read it (int() of the claim); 0 (never cached) if it somehow is not."""
    exp = payload.get("exp")
    if not isinstance(exp, int | float | str):
        return 0.0
    try:
        return min(float(int(exp)), float(2**62))
    except (ValueError, OverflowError):
        return 0.0


def _claims(payload: dict[str, object]) -> Claims:
    try:
        sub = UUID(str(payload["sub"]))
    except ValueError:
        raise Unauthenticated("token subject must be a UUID") from None
    return Claims(
        sub=sub, email=_storable_email(payload.get("email")), expires_at=_expiry(payload) or None
    )


def _storable_email(email: object) -> str | None:
    """The email claim as one valid address, or None: the user is kept, without email.

    Anything else could not be stored (a NUL, a lone surrogate: HTTP 500 outside GraphQL) or
    mailed (a line break adds headers, a comma adds recipients).
    """
    return storable_email(email)
