"""Object storage in a local folder: atomic writes through a temp file and os.replace."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from services.storage.object_store import (
    ObjectStore,
    ObjectStoreError,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)


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
