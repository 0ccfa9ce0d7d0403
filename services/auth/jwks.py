"""Public signing keys (RS256/ES256) from JWT_JWKS_FILE or JWT_JWKS_URL, cached by `kid`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from services.errors import ConfigurationError, Unauthenticated

log = logging.getLogger(__name__)

# Asymmetric algorithms we accept; HS* never comes from a key set (no alg confusion).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})


def parse_jwks(document: Any) -> dict[str | None, jwt.PyJWK]:
    """The usable signing keys of a JWKS document, by `kid`; raises ValueError when none."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS document is a JSON object with a "keys" list')
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # unsupported key types are skipped, like PyJWKSet does
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[key.key_id] = key
    if not keys:
        raise ValueError("the JWKS document has no usable RS*/ES* signing key")
    return keys


def load_jwks_file(path: str) -> dict[str | None, jwt.PyJWK]:
    """Keys from a JWKS file; a bad file is a ConfigurationError naming JWT_JWKS_FILE."""
    try:
        return parse_jwks(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"JWT_JWKS_FILE {path}: {exc}") from None


class JwksKeys:
    """Keys from a file (read once) or a URL (fetched with httpx, cached for `cache_seconds`).

    An unknown `kid` triggers one refetch, but never more than once per `min_refresh_seconds`,
    so a flood of tokens with made-up kids cannot turn into a flood of fetches.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        file: str | None = None,
        cache_seconds: float = 600.0,
        min_refresh_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = load_jwks_file(file) if file else {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def key_for(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key that must have signed a token with this header; raises Unauthenticated."""
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated(f"unsupported token algorithm {algorithm!r}")
        if self.url and self._stale():
            await self._refresh()
        key = self._lookup(kid)
        if key is None and self.url:
            await self._refresh()
            key = self._lookup(kid)
        if key is None:
            if not self._keys:
                raise Unauthenticated("token signing keys are unavailable")
            raise Unauthenticated(f"unknown signing key id {kid!r}")
        if key.algorithm_name != algorithm:
            raise Unauthenticated(
                f"token algorithm {algorithm} does not match its key ({key.algorithm_name})"
            )
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        # A token without `kid` is only unambiguous when the set holds a single key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_seconds

    def _may_refetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._min_refresh_seconds
        )

    async def _refresh(self) -> None:
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted or not self._may_refetch():
                return  # another request just refreshed, or the last attempt is too recent
            self._attempted_at = self._clock()
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._attempted_at
            except (httpx.HTTPError, ValueError) as exc:
                # Keep serving the last good keys; the next refresh is throttled.
                log.warning("fetching JWT_JWKS_URL failed: %s", exc)

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        assert self.url is not None
        self.fetch_count += 1
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            response = await http.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            return parse_jwks(response.json())
