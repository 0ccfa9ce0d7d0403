"""Random secrets that development keeps in `$DATA_DIR`, so restarts keep tokens and links valid."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def random_token() -> str:
    """The default secret: 48 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(48)


def kept_secret(data_dir: Path, name: str, make: Callable[[], str] = random_token) -> str:
    """The secret stored in `data_dir/name`, created by `make` (mode 0600) on first use."""
    path = Path(data_dir) / name
    if not path.exists():
        _create_secret_file(path, make())
    return path.read_text().strip()


def _create_secret_file(path: Path, secret: str) -> None:
    """Write a new secret atomically; the first of racing processes wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    try:
        os.link(tmp, path)  # fails if another process already created it: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
