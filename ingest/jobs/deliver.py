"""`deliver [--follow] [--workers N]`: drain the deliveries outbox, channel after channel.

One pass claims due rows until none is left, then deletes delivered and failed rows older
than DELIVERY_RETENTION_DAYS (the outbox stays small). With `--follow` it then waits: the
`alert_created` NOTIFY wakes it within moments of a commit, and a periodic sweep picks up
retries that fall due. SIGTERM or SIGINT stop it after the sends in flight; the leases it
still holds are released, so another deliverer takes the rows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ingest.progress import Progress
from services.db import connect
from services.delivery import dispatch, outbox
from services.delivery.channel import Channel, Session
from services.delivery.dispatch import DispatchCounts
from services.delivery.registry import CHANNELS
from services.logs import LogText
from services.settings import Settings

log = logging.getLogger(__name__)

# How often --follow looks for retries that fell due (a NOTIFY covers new alerts).
SWEEP_SECONDS = 5.0
# Retention runs at the first pass and then at most this often (a --follow pass can be seconds
# apart); each run deletes at most RETENTION_BATCHES statements of RETENTION_BATCH rows, so a
# backlog is worked off over several passes without holding up the sends.
RETENTION_EVERY_SECONDS = 60.0
RETENTION_BATCH = 1000
RETENTION_BATCHES = 20


@dataclass
class Deliverer:
    """One process's deliverer: its lease owner name, clients and running totals."""

    settings: Settings
    pool: asyncpg.Pool
    progress: Progress
    workers: int = 2
    worker: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    counts: DispatchCounts = field(default_factory=DispatchCounts)
    deleted: int = 0
    _retention_at: float | None = None

    async def run_pass(self) -> None:
        """Send everything due now, each channel with `workers` senders in turn; retention."""
        for channel in CHANNELS:
            async with channel.session(self.settings) as session:
                if session is None:
                    continue  # said once at start (run_deliver)
                await asyncio.gather(*(self._sender(channel, session) for _ in range(self.workers)))
        await self._retention()

    async def _retention(self) -> None:
        """Delete finished deliveries older than DELIVERY_RETENTION_DAYS, a bounded amount."""
        now = time.monotonic()
        if self._retention_at is not None and now - self._retention_at < RETENTION_EVERY_SECONDS:
            return
        self._retention_at = now
        for _ in range(RETENTION_BATCHES):
            deleted = await outbox.delete_finished(
                self.pool,
                older_than_days=self.settings.delivery_retention_days,
                limit=RETENTION_BATCH,
            )
            self.deleted += deleted
            self.progress.add("old deliveries deleted", deleted)
            if deleted < RETENTION_BATCH:
                return

    async def _sender(self, channel: Channel, session: Session) -> None:
        while True:
            counts = await dispatch.deliver_due(
                self.pool, channel, session, worker=self.worker, settings=self.settings
            )
            if counts is None:
                return
            self._record(counts)

    def _record(self, counts: DispatchCounts) -> None:
        self.counts.add(counts)
        for _ in range(counts.delivered):
            self.progress.item_done("delivered")
        self.progress.add("retries scheduled", counts.retried)
        self.progress.add("failed deliveries", counts.failed)
        for name, sent in counts.messages.items():
            self.progress.add(f"{name} messages sent", sent)
        self.progress.add("targets retired", counts.targets_retired)
        for error in counts.errors:
            # The error may quote a receiver's body: escaped and capped, one line per attempt.
            log.info("delivery attempt failed: %s", LogText(error))

    async def release(self) -> int:
        """Give back every lease this deliverer holds."""
        return await outbox.release(self.pool, self.worker)


async def run_deliver(
    settings: Settings,
    pool: asyncpg.Pool,
    dsn: str,
    progress: Progress,
    *,
    follow: bool = False,
    workers: int = 2,
    stop: asyncio.Event | None = None,
) -> DispatchCounts:
    """One pass, or with `follow` passes until `stop` (or SIGTERM/SIGINT); leases released."""
    for channel in CHANNELS:
        if not channel.configured(settings):
            log.warning("deliver: %s", channel.not_configured)
    deliverer = Deliverer(settings, pool, progress, workers=workers)
    try:
        if follow:
            await _follow(deliverer, dsn, stop or asyncio.Event())
        else:
            await deliverer.run_pass()
    finally:
        released = await asyncio.shield(deliverer.release())
        if released:
            log.info("released %d delivery leases", released)
    return deliverer.counts


async def _follow(deliverer: Deliverer, dsn: str, stop: asyncio.Event) -> None:
    """Pass, wait for a NOTIFY or the sweep, pass again; a stop cancels the sends in flight.

    A cancelled send is not recorded: its row keeps its lease until `run_deliver` releases
    it, and the next deliverer sends it again (receivers dedupe on `webhook-id`).
    """
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    listener = await _listen(dsn, wake)
    try:
        while not stop.is_set():
            wake.clear()
            if not await _unless_stopped(deliverer.run_pass(), stop):
                return
            if not await _unless_stopped(_wait(wake, SWEEP_SECONDS), stop):
                return
            if listener is None or listener.is_closed():
                listener = await _listen(dsn, wake)  # reconnect; the sweep covered the gap
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        if listener is not None and not listener.is_closed():
            await listener.close()


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` unless `stop` is set first (then cancel it); True when it completed."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()  # re-raise a failure of the pass
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _listen(dsn: str, wake: asyncio.Event) -> asyncpg.Connection | None:
    """A LISTEN connection that sets `wake` on every alert; None while Postgres is away."""
    try:
        conn = await connect(dsn)
        await conn.add_listener("alert_created", lambda *_: wake.set())
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("deliver: cannot LISTEN (%s); sweeping every %.0f s", exc, SWEEP_SECONDS)
        return None
    return conn
