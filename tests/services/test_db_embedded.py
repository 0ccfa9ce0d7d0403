"""The embedded PostgreSQL a newcomer gets stops cleanly, even after a process was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT

_HOLD_SERVER = """
import sys, time
from pathlib import Path
from services.db import start_embedded_postgres
start_embedded_postgres(Path(sys.argv[1]))
print("started", flush=True)
if sys.argv[2] == "hold":
    time.sleep(600)
"""


def _postmaster_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(pgdata: Path, mode: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SERVER, str(pgdata), mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_server_stops_with_the_last_process_even_after_a_killed_holder(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    killed = _run(pgdata, "hold")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()  # type: ignore[union-attr]
    assert _postmaster_running(pgdata)  # the killed holder never ran its exit hook

    clean = _run(pgdata, "exit")
    assert clean.wait(timeout=60) == 0
    clean.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while _postmaster_running(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postmaster_running(pgdata)
