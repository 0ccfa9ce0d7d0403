"""LOG_FORMAT=json on a real `python server.py`: JSON objects on stderr, one line per request."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.logs import JsonFormatter, TextFormatter, log_context
from tests.fixtures.app import TEST_JWT_SECRET
from tests.fixtures.server_process import ServerProcess, server_env

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line decoded; a line that is not a JSON object fails the test."""
    entries = []
    for line in stderr.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        for key in ("timestamp", "level", "logger", "message"):
            assert key in entry, line
        datetime.fromisoformat(entry["timestamp"])
        entries.append(entry)
    return entries


@pytest.mark.slow
def test_json_logs_carry_request_id_operation_and_user(
    tmp_path: Path,
    database_url: str,
    server_process: Callable[..., ServerProcess],
    make_token: Callable[..., str],
) -> None:
    env = server_env(tmp_path, database_url, LOG_FORMAT="json")
    server = server_process(env)
    server.wait_healthy()
    user_id = uuid.uuid4()
    token = make_token(sub=user_id)
    with httpx.Client(base_url=server.url) as http:
        named = http.post(
            "/graphql",
            json={"query": "query WhoAmI { me { id } }"},
            headers={"authorization": f"Bearer {token}", "x-request-id": "trace-7f3a.1"},
        )
        anonymous = http.post("/graphql", json={"query": "{ health { ok } }"})
        unsafe = http.get("/livez", headers={"x-request-id": "two words"})
    assert named.json()["data"] == {"me": {"id": str(user_id)}}
    assert named.headers["x-request-id"] == "trace-7f3a.1"
    assert GENERATED_ID.fullmatch(anonymous.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(unsafe.headers["x-request-id"])
    assert server.interrupt() in (0, 130)

    entries = json_lines(server.stderr)
    requests = {e["request_id"]: e for e in entries if e["logger"] == "web.requests"}
    line = requests["trace-7f3a.1"]
    assert line["operation"] == "WhoAmI" and line["user_id"] == str(user_id)
    assert (line["method"], line["path"], line["status"]) == ("POST", "/graphql", 200)
    assert isinstance(line["duration_ms"], float) and line["level"] == "INFO"
    other = requests[anonymous.headers["x-request-id"]]
    assert "user_id" not in other and "operation" not in other  # anonymous and unnamed
    assert requests[unsafe.headers["x-request-id"]]["path"] == "/livez"
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # the server's own lines too
    assert token not in server.output and TEST_JWT_SECRET not in server.output


async def test_text_request_line_names_request_id_and_operation(client: httpx.AsyncClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("web.requests")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = await client.post(
            "/graphql",
            json={"query": "query Probe { health { ok } }"},
            headers={"x-request-id": "abc-123"},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert response.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(
        r"\S+ \S+ INFO web.requests: POST /graphql 200 [\d.]+ ms "
        r"request_id=abc-123 operation=Probe\n",
        stream.getvalue(),
    ), stream.getvalue()


async def test_browsers_may_send_and_read_the_request_id(client: httpx.AsyncClient) -> None:
    origin = "http://localhost:5173"
    preflight = await client.options(
        "/graphql",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-request-id",
        },
    )
    assert preflight.status_code == 200
    assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()
    response = await client.post(
        "/graphql",
        json={"query": "{ health { ok } }"},
        headers={"origin": origin, "x-request-id": "from-browser"},
    )
    assert response.headers["x-request-id"] == "from-browser"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_json_formatter_keeps_a_traceback_inside_the_one_line() -> None:
    record = logging.LogRecord("ingest", logging.ERROR, __file__, 1, "boom %s", ("x",), None)
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    with log_context(command="backfill", ticker="KO"):
        line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "boom x" and entry["level"] == "ERROR"
    assert (entry["command"], entry["ticker"]) == ("backfill", "KO")
    assert "ValueError: bad" in entry["exception"]
