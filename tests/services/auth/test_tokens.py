"""Token verification: HS256 secret, RS256/ES256 from a JWKS file or URL, every failure mode."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from services.auth.jwks import JwksKeys
from services.auth.tokens import Claims, TokenVerifier, issue_token
from services.errors import ConfigurationError, Unauthenticated
from services.settings import Settings
from tests.fixtures.app import error_codes
from tests.fixtures.jwks import (
    JwksServer,
    SigningKey,
    forge_token,
    jwks_document,
    make_ec_key,
    make_rsa_key,
    supabase_claims,
)
from web.app import create_app

SECRET = "unit-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"APP_ENV": "development", "DATA_DIR": str(tmp_path)})


def hs_verifier(settings: Settings, **changes: Any) -> TokenVerifier:
    return TokenVerifier(dataclasses.replace(settings, **changes), secret=SECRET)


async def assert_rejected(verifier: TokenVerifier, token: str, fragment: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert caught.value.code == "UNAUTHENTICATED"
    assert fragment.lower() in caught.value.message.lower(), caught.value.message


# --- HS256 (Supabase legacy secret) ---


async def test_valid_hs256_token_yields_sub_and_email(base_settings: Settings) -> None:
    sub = uuid.uuid4()
    token = issue_token(SECRET, sub, email="a@example.com")
    claims = await hs_verifier(base_settings).verify(token)
    exp = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    assert claims == Claims(sub=sub, email="a@example.com", expires_at=exp)


async def test_expired_token_is_rejected(base_settings: Settings) -> None:
    token = issue_token(SECRET, uuid.uuid4(), ttl_seconds=-120)
    await assert_rejected(hs_verifier(base_settings), token, "expired")


async def test_wrong_secret_is_rejected(base_settings: Settings) -> None:
    token = issue_token("another-secret-of-sufficient-length-0123456789", uuid.uuid4())
    await assert_rejected(hs_verifier(base_settings), token, "Signature verification failed")


async def test_wrong_audience_is_rejected(base_settings: Settings) -> None:
    token = issue_token(SECRET, uuid.uuid4(), audience="anon")
    await assert_rejected(hs_verifier(base_settings), token, "audience")


async def test_issuer_is_checked_when_configured(base_settings: Settings) -> None:
    issuer = "https://project.supabase.co/auth/v1"
    verifier = hs_verifier(base_settings, jwt_issuer=issuer)
    good = issue_token(SECRET, uuid.uuid4(), issuer=issuer)
    assert (await verifier.verify(good)).email is None
    await assert_rejected(
        verifier, issue_token(SECRET, uuid.uuid4(), issuer="https://evil"), "issuer"
    )
    await assert_rejected(verifier, issue_token(SECRET, uuid.uuid4()), "iss")


async def test_alg_none_is_rejected(base_settings: Settings) -> None:
    token = forge_token({"alg": "none", "typ": "JWT"}, supabase_claims(), None)
    await assert_rejected(hs_verifier(base_settings), token, "unsupported token algorithm")


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"])
async def test_garbage_is_rejected(base_settings: Settings, garbage: str) -> None:
    await assert_rejected(hs_verifier(base_settings), garbage, "invalid token")


async def test_missing_sub_is_rejected(base_settings: Settings) -> None:
    token = forge_hs256(supabase_claims(sub=None) | {"sub": None})
    await assert_rejected(hs_verifier(base_settings), token, "sub")


async def test_non_uuid_sub_is_rejected(base_settings: Settings) -> None:
    token = issue_token(SECRET, "user-42")
    await assert_rejected(hs_verifier(base_settings), token, "UUID")


async def test_missing_exp_is_rejected(base_settings: Settings) -> None:
    token = forge_hs256(supabase_claims(exp=None))
    await assert_rejected(hs_verifier(base_settings), token, "exp")


def forge_hs256(claims: dict[str, Any]) -> str:
    claims = {k: v for k, v in claims.items() if v is not None}
    return forge_token({"alg": "HS256", "typ": "JWT"}, claims, SECRET.encode())


# --- RS256 / ES256 from a JWKS file ---


def write_jwks(tmp_path: Path, *keys: SigningKey) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document(*keys)))
    return str(path)


@pytest.mark.parametrize("key_factory", [make_rsa_key, make_ec_key], ids=["RS256", "ES256"])
async def test_asymmetric_token_verifies_with_jwks_file(
    base_settings: Settings, tmp_path: Path, key_factory: Any
) -> None:
    key = key_factory()
    settings = dataclasses.replace(base_settings, jwt_jwks_file=write_jwks(tmp_path, key))
    verifier = TokenVerifier(settings)
    sub = uuid.uuid4()
    payload = supabase_claims(sub)
    claims = await verifier.verify(key.sign(payload))
    assert claims == Claims(sub=sub, email="user@example.com", expires_at=float(payload["exp"]))
    # The JWKS config alone disables the development HS256 secret.
    await assert_rejected(verifier, issue_token(SECRET, sub), "HS256 tokens are not accepted")


async def test_token_signed_by_a_key_outside_the_set_fails(
    base_settings: Settings, tmp_path: Path, rsa_key: SigningKey
) -> None:
    impostor = make_rsa_key(kid=rsa_key.kid)  # same kid, different key
    settings = dataclasses.replace(base_settings, jwt_jwks_file=write_jwks(tmp_path, rsa_key))
    await assert_rejected(TokenVerifier(settings), impostor.sign(supabase_claims()), "Signature")


async def test_hs256_signed_with_the_public_key_fails(
    base_settings: Settings, tmp_path: Path, rsa_key: SigningKey
) -> None:
    """Classic alg confusion: HMAC keyed with the published public key."""
    settings = dataclasses.replace(
        base_settings, jwt_jwks_file=write_jwks(tmp_path, rsa_key), jwt_secret=SECRET
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    token = forge_token(header, supabase_claims(), rsa_key.public_pem)
    await assert_rejected(TokenVerifier(settings), token, "Signature verification failed")
    jwks_only = dataclasses.replace(settings, jwt_secret=None)
    await assert_rejected(TokenVerifier(jwks_only), token, "HS256 tokens are not accepted")


async def test_alg_must_match_the_key_type(
    base_settings: Settings, tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    settings = dataclasses.replace(base_settings, jwt_jwks_file=write_jwks(tmp_path, rsa_key))
    # An ES256 token naming the RSA key's kid.
    token = ec_key.sign(supabase_claims(), kid=rsa_key.kid)
    await assert_rejected(TokenVerifier(settings), token, "does not match its key")


async def test_unknown_kid_in_a_file_is_rejected(
    base_settings: Settings, tmp_path: Path, rsa_key: SigningKey
) -> None:
    settings = dataclasses.replace(base_settings, jwt_jwks_file=write_jwks(tmp_path, rsa_key))
    await assert_rejected(
        TokenVerifier(settings), rsa_key.sign(supabase_claims(), kid="nope"), "unknown signing key"
    )


@pytest.mark.parametrize(
    "content", ["not json", "{}", '{"keys": []}', '{"keys": [{"kty": "oct", "k": "abc"}]}']
)
def test_bad_jwks_file_is_a_configuration_error(
    base_settings: Settings, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="JWT_JWKS_FILE"):
        TokenVerifier(dataclasses.replace(base_settings, jwt_jwks_file=str(path)))


# --- RS256 / ES256 from a JWKS URL (real loopback server) ---


async def test_jwks_url_keys_are_fetched_once_and_cached(
    base_settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    jwks_server.document = jwks_document(rsa_key, ec_key)
    verifier = TokenVerifier(dataclasses.replace(base_settings, jwt_jwks_url=jwks_server.url))
    for key in (rsa_key, ec_key, rsa_key, ec_key):
        sub = uuid.uuid4()
        assert (await verifier.verify(key.sign(supabase_claims(sub)))).sub == sub
    assert jwks_server.requests == 1


async def test_jwks_url_cache_expires_after_ttl(
    jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.document = jwks_document(rsa_key)
    clock = FakeClock()
    keys = JwksKeys(url=jwks_server.url, cache_seconds=600, clock=clock)
    await keys.key_for(rsa_key.kid, "RS256")
    clock.now += 599
    await keys.key_for(rsa_key.kid, "RS256")
    assert jwks_server.requests == 1
    clock.now += 2
    await keys.key_for(rsa_key.kid, "RS256")
    assert jwks_server.requests == 2


async def test_unknown_kid_refetches_once_then_is_throttled(
    jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.document = jwks_document(rsa_key)
    clock = FakeClock()
    keys = JwksKeys(url=jwks_server.url, min_refresh_seconds=30, clock=clock)
    await keys.key_for(rsa_key.kid, "RS256")
    clock.now += 31
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        with pytest.raises(Unauthenticated, match="unknown signing key"):
            await keys.key_for(kid, "RS256")
    assert jwks_server.requests == 2  # one refetch for the flood, not three


async def test_key_rotation_is_picked_up_on_unknown_kid(
    base_settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.document = jwks_document(rsa_key)
    clock = FakeClock()
    keys = JwksKeys(url=jwks_server.url, min_refresh_seconds=30, clock=clock)
    verifier = TokenVerifier(base_settings, secret="", jwks=keys)
    await verifier.verify(rsa_key.sign(supabase_claims()))
    rotated = make_ec_key()
    jwks_server.document = jwks_document(rsa_key, rotated)
    clock.now += 31
    sub = uuid.uuid4()
    assert (await verifier.verify(rotated.sign(supabase_claims(sub)))).sub == sub
    assert jwks_server.requests == 2


async def test_jwks_url_outage_fails_closed_and_keeps_last_good_keys(
    jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.status = 500
    clock = FakeClock()
    keys = JwksKeys(url=jwks_server.url, cache_seconds=60, min_refresh_seconds=30, clock=clock)
    with pytest.raises(Unauthenticated, match="unavailable"):
        await keys.key_for(rsa_key.kid, "RS256")
    jwks_server.status, jwks_server.document = 200, jwks_document(rsa_key)
    clock.now += 31
    assert (await keys.key_for(rsa_key.kid, "RS256")).key_id == rsa_key.kid
    jwks_server.status = 500
    clock.now += 61  # cache expired and the refetch fails: the last good keys still verify
    assert (await keys.key_for(rsa_key.kid, "RS256")).key_id == rsa_key.kid
    assert jwks_server.requests == 3


async def test_concurrent_requests_share_one_fetch(
    jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    import asyncio

    jwks_server.document = jwks_document(rsa_key)
    keys = JwksKeys(url=jwks_server.url)
    found = await asyncio.gather(*(keys.key_for(rsa_key.kid, "RS256") for _ in range(20)))
    assert {k.key_id for k in found} == {rsa_key.kid}
    assert jwks_server.requests == 1


# --- through the real app: a protected field answers UNAUTHENTICATED on every failure ---

ME = "{ me { id email } }"


async def me_with_header(client: httpx.AsyncClient, authorization: str | None) -> dict[str, Any]:
    headers = {"authorization": authorization} if authorization is not None else {}
    response = await client.post("/graphql", json={"query": ME}, headers=headers)
    assert response.status_code == 200
    return dict(response.json())


async def test_me_with_a_valid_token(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    sub = uuid.uuid4()
    body = await me_with_header(client, f"Bearer {make_token(sub, email='me@example.com')}")
    assert body["data"]["me"] == {"id": str(sub), "email": "me@example.com"}


@pytest.mark.parametrize(
    "header",
    ["bearer {t}", "BEARER {t}", "Bearer    {t}", "  Bearer {t}  "],
    ids=["lowercase", "uppercase", "extra-spaces", "padded"],
)
async def test_authorization_header_variants_accepted(
    client: httpx.AsyncClient, make_token: Callable[..., str], header: str
) -> None:
    sub = uuid.uuid4()
    body = await me_with_header(client, header.format(t=make_token(sub)))
    assert body.get("errors") is None, body
    assert body["data"]["me"]["id"] == str(sub)


@pytest.mark.parametrize(
    "header",
    [None, "", "{t}", "Token {t}", "Basic {t}", "Bearer", "Bearer ", "Bearer {t} extra"],
    ids=["absent", "empty", "no-scheme", "token-scheme", "basic", "no-token", "blank", "two"],
)
async def test_authorization_header_variants_refused(
    client: httpx.AsyncClient, make_token: Callable[..., str], header: str | None
) -> None:
    value = None if header is None else header.format(t=make_token())
    body = await me_with_header(client, value)
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None


@pytest.mark.parametrize(
    "kind", ["expired", "wrong-secret", "wrong-audience", "alg-none", "garbage", "non-uuid-sub"]
)
async def test_bad_tokens_are_unauthenticated_over_http(
    client: httpx.AsyncClient, make_token: Callable[..., str], kind: str
) -> None:
    token = {
        "expired": lambda: make_token(ttl_seconds=-120),
        "wrong-secret": lambda: issue_token(SECRET, uuid.uuid4()),
        "wrong-audience": lambda: make_token(audience="anon"),
        "alg-none": lambda: forge_token({"alg": "none"}, supabase_claims(), None),
        "garbage": lambda: "garbage",
        "non-uuid-sub": lambda: make_token(sub="user-1"),
    }[kind]()
    body = await me_with_header(client, f"Bearer {token}")
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_rs256_and_es256_through_the_app_with_a_jwks_url(
    settings: Settings,
    database_url: str,
    jwks_server: JwksServer,
    rsa_key: SigningKey,
    ec_key: SigningKey,
) -> None:
    jwks_server.document = jwks_document(rsa_key, ec_key)
    configured = dataclasses.replace(settings, jwt_jwks_url=jwks_server.url)
    app = create_app(configured, database_url=database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for key in (rsa_key, ec_key):
                sub = uuid.uuid4()
                body = await me_with_header(client, f"Bearer {key.sign(supabase_claims(sub))}")
                assert body["data"]["me"]["id"] == str(sub)
            stranger = make_rsa_key()
            body = await me_with_header(client, f"Bearer {stranger.sign(supabase_claims())}")
            assert error_codes(body) == ["UNAUTHENTICATED"]
    # The stranger's unknown kid came right after the first fetch: the refetch is throttled.
    assert jwks_server.requests == 1
