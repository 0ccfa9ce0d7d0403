"""Progress for long jobs: a bar on a TTY, periodic log lines otherwise, one summary line.

On a terminal the bar is tqdm's (position, rate, ETA); while it is shown, log records are
written above it instead of across it. Elsewhere (cron, pipes) a plain log line every
`log_interval` seconds says the same.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TextIO

from services.logs import escape_log_text

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("ingest.progress")

LOG_INTERVAL_SECONDS = 10.0


class Progress:
    """Counts outcomes of a job's items and reports them; `summary_line()` ends the run."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        log_interval: float = LOG_INTERVAL_SECONDS,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.log_interval = log_interval
        self.started = time.monotonic()
        self.outcomes: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self._last_report = self.started
        self._tracked: int | None = None
        self._bar: tqdm[None] | None = None
        self._redirect: AbstractContextManager[None] | None = None

    @property
    def done(self) -> int:
        if self._tracked is not None:
            return self._tracked
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._report(force=True)

    def track(self, done: int, total: int) -> None:
        """Position reported by a job that keeps its own counts (a `(done, total)` callback)."""
        self._tracked, self.total = done, total
        self._report()

    def add(self, name: str, amount: int = 1) -> None:
        """Add to a named counter shown in the summary (rows written, rows rejected, …)."""
        self.counts[name] += amount

    def item_done(self, outcome: str = "ok") -> None:
        """One item finished with `outcome` (e.g. 'completed', 'retried', 'unchanged')."""
        self.outcomes[outcome] += 1
        self._report()

    def item_failed(self, what: str, message: str, outcome: str = "failed") -> None:
        """One item failed; `what: message` is kept for the summary and logged now."""
        self.outcomes[outcome] += 1
        self.failed_step(what, message)

    def failed_step(self, what: str, message: str) -> None:
        """A failure beside the counted items (a follow-up step); the run still fails."""
        # Messages quote sources (a DoltHub error body): one escaped, capped line each.
        message = escape_log_text(message)
        self.failures.append(f"{what}: {message}")
        log.warning("%s: %s failed: %s", self.label, what, message)
        self._report()

    def _position(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.done}{total}"

    def _report(self, force: bool = False) -> None:
        if self.interactive:
            self._draw(force)
            return
        now = time.monotonic()
        if force or now - self._last_report >= self.log_interval:
            self._last_report = now
            log.info("%s", self._plain_line())

    def _plain_line(self) -> str:
        """`label: 40/100 items, 1 failed, 12 s, 3.3/s, ETA 18 s` (rate and ETA once known)."""
        elapsed = self.elapsed
        line = f"{self.label}: {self._position()} items, {self.failed} failed, {elapsed:.0f} s"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            line += f", {rate:.1f}/s"
            if self.total is not None and self.total >= self.done:
                line += f", ETA {(self.total - self.done) / rate:.0f} s"
        return line

    def _draw(self, force: bool) -> None:
        if self._bar is None:
            # Imported here: cron runs never draw a bar and start faster without tqdm.
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # From the first report on, console log records go through tqdm.write, which
            # lifts the bar, writes the line and redraws the bar below it.
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
            self._bar = tqdm(
                total=self.total,
                desc=self.label,
                unit="item",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )
        bar = self._bar
        bar.set_postfix_str(f"{self.failed} failed", refresh=False)
        if bar.total != self.total:
            bar.total = self.total
            force = True
        if force:
            bar.n = self.done
            bar.refresh()
        else:
            bar.update(self.done - bar.n)  # redraws at most every 0.1 s

    def close(self) -> None:
        """Erase the bar (the summary line replaces it)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def summary_line(self) -> str:
        """`label: 40 completed, 1 failed, 1234 rows written, 3 rows rejected in 5.2 s`."""
        parts = [f"{n} {name}" for name, n in sorted(self.outcomes.items()) if name != "failed"]
        parts.append(f"{self.failed} failed")
        parts += [f"{n} {name}" for name, n in sorted(self.counts.items())]
        line = f"{self.label}: " + ", ".join(parts) + f" in {self.elapsed:.1f} s"
        if self.failures:
            shown = "; ".join(self.failures[:5])
            more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
            line += f" — failures: {shown}{more}"
        return line
