"""Per-user WebSocket limits in one process: open sockets, and the token's expiry per socket.

A socket is admitted after its token is verified; it is counted against its user until it
ends, and closed with 4403 when that token expires (so no operation runs on it afterwards).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

log = logging.getLogger(__name__)

TOKEN_EXPIRED = 4403
TOO_MANY = 4429


@dataclass
class _Socket:
    user_id: UUID
    expiry: asyncio.TimerHandle | None


class SocketLimits:
    """Open sockets per user (at most `max_per_user`) and each one's expiry timer."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._per_user: dict[UUID, int] = {}
        self._sockets: dict[int, _Socket] = {}

    def open_count(self, user_id: UUID) -> int:
        return self._per_user.get(user_id, 0)

    def admit(
        self,
        key: int,
        user_id: UUID,
        expires_at: float | None,
        close: Callable[[int, str], Awaitable[None]],
    ) -> bool:
        """Count socket `key` for `user_id` (False: the user is at the limit).

        `close` is called with 4403 once `expires_at` (unix seconds) passes.
        """
        if key in self._sockets:
            return True
        if self.open_count(user_id) >= self.max_per_user:
            return False
        expiry = None
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            expiry = asyncio.get_running_loop().call_later(delay, _start_closing, close)
        self._sockets[key] = _Socket(user_id, expiry)
        self._per_user[user_id] = self.open_count(user_id) + 1
        return True

    def release(self, key: int) -> None:
        """Socket `key` ended: uncount it and drop its timer."""
        socket = self._sockets.pop(key, None)
        if socket is None:
            return
        if socket.expiry is not None:
            socket.expiry.cancel()
        left = self.open_count(socket.user_id) - 1
        if left > 0:
            self._per_user[socket.user_id] = left
        else:
            self._per_user.pop(socket.user_id, None)


# Closing tasks in flight (the loop keeps only weak references to tasks).
_closing: set[asyncio.Task[None]] = set()


def _start_closing(close: Callable[[int, str], Awaitable[None]]) -> None:
    task = asyncio.ensure_future(_close_quietly(close))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close_quietly(close: Callable[[int, str], Awaitable[None]]) -> None:
    try:
        await close(TOKEN_EXPIRED, "token expired")
    except RuntimeError:  # the socket closed meanwhile
        pass
    except Exception:
        log.exception("closing a WebSocket whose token expired")


def expired(expires_at: float | None) -> bool:
    """Whether a token with this expiry (unix seconds) has expired."""
    return expires_at is not None and time.time() >= expires_at
