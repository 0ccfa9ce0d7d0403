"""SIGTERM/SIGINT as a stop request for the long-running jobs (backfill, evaluate, deliver).

A job given a stop event finishes or hands back what it holds and returns; the command then
exits 0 as usual. A second signal exits at once with 128 + the signal's number, for when the
work in hand is stuck (a store or source that stopped answering): that is as safe as a
SIGKILL, which the jobs are built for — every write is one transaction or one atomic object,
and a claim held at that moment returns to the queue when its lease runs out. Outside the
main thread no handler can be installed, and the event is only set by whoever passed it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """Set `stop` on SIGTERM/SIGINT while the block runs; default handling resumes after."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    received: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _request_stop, stop, signum, received)
            installed.append(signum)
    try:
        yield stop
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _request_stop(
    stop: asyncio.Event, signum: signal.Signals, received: list[signal.Signals]
) -> None:
    received.append(signum)
    if len(received) == 1:
        log.warning(
            "%s received: stopping after the work in hand (send it again to exit now)",
            signum.name,
        )
        stop.set()
        return
    log.warning(
        "%s received again: exiting now; a claim held now returns when its lease runs out",
        signum.name,
    )
    force_exit(128 + signum)


def force_exit(status: int) -> None:
    """Flush what was printed and logged, then end the process without unwinding.

    Unwinding could wait as long as the stuck work: asyncio.run joins the thread a blocked
    read runs in.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
