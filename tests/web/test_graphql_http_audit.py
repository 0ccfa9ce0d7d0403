"""The graphql-http package's audit of /graphql (GraphQL over HTTP): every check passes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
from starlette.applications import Starlette

from tests.fixtures.ws import live_server
from tests.paths import ROOT

AUDIT = ROOT / "bench" / "graphql_http_audit"


def _installed() -> bool:
    """node and the audit's pinned npm packages (installed here from the lock when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False
    if not (AUDIT / "node_modules" / "graphql-http").is_dir():
        completed = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=AUDIT,
            capture_output=True,
            check=False,
            timeout=180,
        )
        return completed.returncode == 0
    return True


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_graphql_http_audit_passes_every_check(app: Starlette) -> None:
    if not await asyncio.to_thread(_installed):
        pytest.skip("node/npm or the registry is not available: the audit cannot run")
    async with live_server(app) as address:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(AUDIT / "audit.mjs"),
            f"http://{address}/graphql",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    lines = stdout.decode().strip().splitlines()
    counts = json.loads(lines[-1])
    assert process.returncode == 0, (lines, stderr.decode())
    assert counts == {"total": 61, "ok": 61}, lines
