"""Progress for long jobs: a bar on a TTY, periodic log lines otherwise, one summary line."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import TextIO

log = logging.getLogger("ingest.progress")

BAR_WIDTH = 28
LOG_INTERVAL_SECONDS = 10.0
REDRAW_INTERVAL_SECONDS = 0.1


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
        self._drawn = False
        self._tracked: int | None = None

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
        self.failures.append(f"{what}: {message}")
        self._clear()
        log.warning("%s: %s failed: %s", self.label, what, message)
        self._report()

    def _position(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.done}{total}"

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.interactive:
            if force or now - self._last_report >= REDRAW_INTERVAL_SECONDS:
                self._draw()
                self._last_report = now
        elif force or now - self._last_report >= self.log_interval:
            self._last_report = now
            log.info(
                "%s: %s items, %d failed, %.0f s",
                self.label,
                self._position(),
                self.failed,
                self.elapsed,
            )

    def _draw(self) -> None:
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // max(self.total, 1))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
        else:
            bar = ""
        line = f"\r{self.label} {bar}{self._position()} failed {self.failed} {self.elapsed:.0f}s"
        self.stream.write(line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self.interactive and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """Erase the bar (the summary line replaces it)."""
        self._clear()

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
