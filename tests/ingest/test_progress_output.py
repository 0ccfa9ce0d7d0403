"""What a real `python -m ingest update-prices` shows: a bar on a terminal, plain lines in cron."""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence

import pytest

from ingest.progress import Progress
from services.storage.local import LocalObjectStore
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import CliResult, run_ingest
from tests.paths import ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
RETRY_WARNING = "WARNING ingest.dolthub.client: DoltHub "


@pytest.fixture
def stale_prices(stale_store: LocalObjectStore, fake_dolthub: FakeDoltHub) -> None:
    """AAPL and KO behind DoltHub, and one DoltHub hiccup that update-prices will retry."""
    fake_dolthub.reset()
    fake_dolthub.fail_next(1, status=503)


def run_on_terminal(args: Sequence[str], env: dict[str, str]) -> CliResult:
    """`python -m ingest …` with stderr on a 120-column pseudo-terminal; stdout piped."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    stdout, _ = process.communicate(timeout=60)
    return CliResult(process.returncode, stdout.decode(), b"".join(chunks).decode())


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal ends up showing: `\\r` returns to column 0, later text overwrites."""
    lines: list[list[str]] = [[]]
    column = 0
    for char in ANSI.sub("", raw):
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        else:
            line = lines[-1]
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    return ["".join(line).rstrip() for line in lines]


async def test_on_a_terminal_the_bar_shows_and_log_lines_land_above_it(
    stale_prices: None, ingest_env: dict[str, str]
) -> None:
    result = await asyncio.to_thread(run_on_terminal, ["update-prices"], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("update-prices: 2 updated, 0 failed"), result.stdout
    # tqdm's bar: percentage, position, elapsed<ETA and rate.
    assert re.search(r"update-prices: +\d+%\|.*\| [0-2]/2 \[\d\d:\d\d<", result.stderr)
    assert "item/s" in result.stderr
    shown = screen_lines(result.stderr)
    retries = [line for line in shown if RETRY_WARNING in line]
    assert len(retries) == 1, shown
    # The warning starts its own line: nothing of the bar before it or after it.
    assert LOG_LINE.match(retries[0]) and "%|" not in retries[0], retries[0]


async def test_without_a_terminal_plain_log_lines_and_no_control_characters(
    stale_prices: None, ingest_env: dict[str, str]
) -> None:
    result = await run_ingest(["update-prices"], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("update-prices: 2 updated, 0 failed"), result.stdout
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(
        re.fullmatch(LOG_LINE.pattern + r"update-prices: 0/2 items, 0 failed, \d+ s.*", line)
        for line in lines
    ), lines
    assert sum(RETRY_WARNING in line for line in lines) == 1, lines
    assert all(LOG_LINE.match(line) for line in lines), lines


def test_plain_lines_give_rate_and_eta_once_items_are_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.progress")
    progress = Progress("evaluate", stream=io.StringIO(), interactive=False, log_interval=0)
    progress.track(0, 4)
    assert caplog.messages[-1].startswith("evaluate: 0/4 items, 0 failed, ")
    assert "/s" not in caplog.messages[-1]
    progress.track(2, 4)
    assert re.fullmatch(
        r"evaluate: 2/4 items, 0 failed, \d+ s, [\d.]+/s, ETA \d+ s", caplog.messages[-1]
    )


def test_a_source_error_is_one_escaped_line_in_the_log_and_the_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress = Progress("backfill", stream=io.StringIO(), interactive=False)
    source_said = "HTTP 404: <pre>db\nERROR forged line\x1b[2J</pre>" + "x" * 5000
    with caplog.at_level(logging.WARNING, logger="ingest.progress"):
        progress.item_failed("KO", source_said)
    for text in (caplog.records[0].getMessage(), progress.summary_line()):
        assert "\n" not in text and "\x1b" not in text
        assert "db\\nERROR forged line\\x1b[2J" in text
        assert len(text) < 1000
