"""Object storage: one async interface over a local folder and any S3 API (AWS, R2, moto)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from services.errors import ConfigurationError, ServiceError
from services.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_KEY_BYTES = 1024
_BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


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


class LocalObjectStore(ObjectStore):
    """Objects as files under `root`; writes go to a temp file then `os.replace`."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync

    @property
    def description(self) -> str:
        return f"file://{self.root}"

    def path_for(self, key: str) -> Path:
        """The file that holds `key` (validated, always inside root)."""
        return self.root / validate_key(key)

    async def get(self, key: str) -> bytes | None:
        path = self.path_for(key)
        return await asyncio.to_thread(_read_file, path, key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        # One thread hop for the whole batch: per-key hops dominate for small files.
        paths = [(key, self.path_for(key)) for key in keys]
        return await asyncio.to_thread(lambda: {key: _read_file(p, key) for key, p in paths})

    async def put(self, key: str, data: bytes) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(self._write_atomically, path, bytes(data), key)

    def _write_atomically(self, path: Path, data: bytes, key: str) -> None:
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
            if self.fsync:
                _fsync_directory(path.parent)  # make the rename itself durable
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectStoreError(f"cannot write object {key!r} under {self.root}: {exc}") from exc

    async def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list_sync, prefix)

    def _list_sync(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix.rpartition("/")[0]
        keys: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            stem = "" if rel == "." else rel + "/"
            keys.extend(stem + name for name in filenames if not name.startswith("."))
        return sorted(key for key in keys if key.startswith(prefix))

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(self._delete_sync, path)

    def _delete_sync(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()  # prune now-empty partitions so listings stay short
            except OSError:
                break
            parent = parent.parent

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def ping(self) -> bool:
        def check() -> bool:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.access(self.root, os.R_OK | os.W_OK | os.X_OK)

        try:
            return await asyncio.to_thread(check)
        except OSError as exc:
            log.warning("object store %s is not usable: %s", self.description, exc)
            return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: Path, key: str) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise ObjectStoreError(f"cannot read object {key!r}: {exc}") from exc


class S3ObjectStore(ObjectStore):
    """Objects in an S3-API bucket (AWS, Cloudflare R2, moto) through one boto3 client."""

    prefers_listing = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_concurrency: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
        list_page_size: int = 1000,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_prefix(self.prefix)
        self.endpoint_url = endpoint_url
        self.list_page_size = list_page_size
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_concurrency,
            # Third-party S3 APIs (R2, MinIO, older moto) reject the newer default checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        # Credentials come from boto3's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...).
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        # Health checks must answer fast: one attempt, short timeouts, no retry storm.
        self._ping_client: Any = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=config.merge(
                Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 1})
            ),
        )
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="s3")

    @property
    def description(self) -> str:
        where = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return where + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, fn: Callable[[], T], action: str, key: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ObjectStoreError(
                f"S3 {action} {key!r} in {self.description} failed: {code}"
            ) from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(
                f"S3 {action} {key!r} in {self.description} failed: {exc}"
            ) from exc

    async def get(self, key: str) -> bytes | None:
        full = self._full(validate_key(key))

        def fetch() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

        return await self._call(fetch, "get", key)

    async def put(self, key: str, data: bytes) -> None:
        full = self._full(validate_key(key))
        body = bytes(data)
        await self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=full, Body=body), "put", key
        )

    async def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        full = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> builtins.list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            keys: builtins.list[str] = []
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                keys.extend(item["Key"][strip:] for item in page.get("Contents", ()))
            return sorted(keys)

        return await self._call(collect, "list", prefix)

    async def delete(self, key: str) -> None:
        full = self._full(validate_key(key))
        await self._call(
            lambda: self.client.delete_object(Bucket=self.bucket, Key=full), "delete", key
        )

    async def exists(self, key: str) -> bool:
        full = self._full(validate_key(key))

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                    return False
                raise
            return True

        return await self._call(head, "head", key)

    async def ping(self) -> bool:
        try:
            await self._call(lambda: self._ping_client.head_bucket(Bucket=self.bucket), "ping", "")
        except ObjectStoreError as exc:
            log.warning("object store %s is not reachable: %s", self.description, exc)
            return False
        return True

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
        self.client.close()
        self._ping_client.close()


def open_object_store(settings: Settings) -> ObjectStore:
    """The store named by OBJECT_STORE_URL (`file:///abs/dir` or `s3://bucket[/prefix]`)."""
    url = settings.object_store_url
    parsed = urlparse(url)
    if parsed.query or parsed.fragment or parsed.params:
        raise ConfigurationError(f"OBJECT_STORE_URL must not have a query or fragment: {url!r}")
    if parsed.scheme == "file":
        return LocalObjectStore(_local_root(parsed.netloc, parsed.path, url))
    if parsed.scheme == "s3":
        bucket, prefix = _s3_location(parsed.netloc, parsed.path, url)
        return S3ObjectStore(
            bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.aws_region
        )
    raise ConfigurationError(
        f"OBJECT_STORE_URL must start with file:// or s3://; got {_redact(url)!r}"
    )


def _local_root(netloc: str, path: str, url: str) -> Path:
    path = unquote(path)
    if netloc.startswith("."):
        # `file://.data/objects` (relative to the working directory) is accepted as a courtesy.
        return Path(netloc + path).resolve()
    if netloc not in ("", "localhost"):
        raise ConfigurationError(
            f"OBJECT_STORE_URL file URLs take an absolute path (file:///abs/dir), "
            f"got host {netloc!r} in {url!r}"
        )
    if not path.startswith("/") or path == "/":
        raise ConfigurationError(
            f"OBJECT_STORE_URL must name a directory as file:///abs/dir; got {url!r}"
        )
    return Path(path)


def _s3_location(netloc: str, path: str, url: str) -> tuple[str, str]:
    if "@" in netloc or ":" in netloc:
        raise ConfigurationError(
            "OBJECT_STORE_URL must not carry credentials or ports; use AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and S3_ENDPOINT_URL"
        )
    if not _BUCKET_PATTERN.fullmatch(netloc) or ".." in netloc:
        raise ConfigurationError(
            f"OBJECT_STORE_URL must be s3://bucket[/prefix] with a valid bucket name "
            f"(3-63 of a-z, 0-9, '.', '-'); got {url!r}"
        )
    prefix = unquote(path).strip("/")
    if prefix:
        try:
            validate_prefix(prefix)
        except InvalidKeyError as exc:
            raise ConfigurationError(f"OBJECT_STORE_URL has a bad prefix: {exc.message}") from None
    return netloc, prefix


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(parsed.password, "***")
    return url
