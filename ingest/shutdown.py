"""SIGTERM/SIGINT as a stop request for the long-running jobs (backfill, evaluate, deliver).

A job given a stop event finishes or hands back what it holds and returns; the command then
exits 0 as usual. Outside the main thread no handler can be installed, and the event is
only set by whoever passed it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """Set `stop` on SIGTERM/SIGINT while the block runs; default handling resumes after."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _request_stop, stop, signum)
            installed.append(signum)
    try:
        yield stop
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _request_stop(stop: asyncio.Event, signum: signal.Signals) -> None:
    if not stop.is_set():
        log.warning("%s received: stopping after the work in hand", signum.name)
    stop.set()
