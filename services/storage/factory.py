"""Opening the object store OBJECT_STORE_URL names: a local folder or any S3 API bucket."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from services.errors import ConfigurationError
from services.settings import Settings
from services.storage.local import LocalObjectStore
from services.storage.object_store import InvalidKeyError, ObjectStore, validate_prefix
from services.storage.s3 import S3ObjectStore

_BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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
