"""Object storage in any S3 API bucket (AWS, Cloudflare R2, moto) through boto3."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from services.storage.object_store import (
    ObjectStore,
    ObjectStoreError,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


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
