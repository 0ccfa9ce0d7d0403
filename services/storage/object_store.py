"""Object storage interface, its errors and the object key rules shared by every backend."""

from __future__ import annotations

import asyncio
import builtins
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType

from services.errors import ServiceError

MAX_KEY_BYTES = 1024
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class ObjectStoreError(ServiceError):
    """A storage backend failed (network, permissions, no bucket); the message names the key."""


class InvalidKeyError(ObjectStoreError, ValueError):
    """A key or prefix that could escape the store or collide with temp files."""


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative object key, else raise InvalidKeyError."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("object key must be a non-empty string")
    _check_path_text(key, "object key")
    if key.endswith("/"):
        raise InvalidKeyError(f"object key must not end with '/': {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a safe listing prefix ('' lists everything)."""
    if not isinstance(prefix, str):
        raise InvalidKeyError("object prefix must be a string")
    if prefix:
        _check_path_text(prefix.removesuffix("/"), "object prefix")
    return prefix


def _check_path_text(text: str, what: str) -> None:
    if text.startswith("/"):
        raise InvalidKeyError(f"{what} must be relative (no leading '/'): {text!r}")
    if _CONTROL_CHARS.search(text):
        raise InvalidKeyError(f"{what} must not contain control characters or '\\': {text!r}")
    if len(text.encode()) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    for segment in text.split("/"):
        if not segment:
            raise InvalidKeyError(f"{what} must not contain empty segments ('//'): {text!r}")
        # '.' and '..' could escape the root; other dot-names are reserved for temp files.
        if segment.startswith("."):
            raise InvalidKeyError(f"{what} segments must not start with '.': {text!r}")


class ObjectStore(ABC):
    """Async key → bytes storage; `put` is atomic, a missing key reads as None."""

    # True when listing is cheaper than probing keys (remote stores: one LIST vs many GETs).
    prefers_listing: bool = False

    @property
    @abstractmethod
    def description(self) -> str:
        """Where objects live, safe to log (never contains credentials)."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when the key does not exist."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Fetch several keys concurrently; missing keys map to None."""
        values = await asyncio.gather(*(self.get(key) for key in keys))
        return dict(zip(keys, values, strict=True))

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically: readers see the old object or the new one."""

    @abstractmethod
    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Every key starting with `prefix` (a plain string prefix), sorted."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""

    @abstractmethod
    async def ping(self) -> bool:
        """Health check: True when the store is reachable and usable."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release clients and threads."""

    async def __aenter__(self) -> ObjectStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
