"""Object storage: one async interface over a local folder and any S3 API (AWS, R2, moto)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

# The backends live in their own modules; these names stay importable from here.
from ingest.object_store_base import InvalidKeyError as InvalidKeyError
from ingest.object_store_base import ObjectStore as ObjectStore
from ingest.object_store_base import ObjectStoreError as ObjectStoreError
from ingest.object_store_base import validate_key as validate_key
from ingest.object_store_base import validate_prefix as validate_prefix
from ingest.object_store_local import LocalObjectStore as LocalObjectStore
from ingest.object_store_s3 import S3ObjectStore as S3ObjectStore
from services.errors import ConfigurationError
from services.settings import Settings

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
