"""`python server.py` as a real process: token, configuration errors, serve, workers, demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from services.auth.tokens import DEMO_USER_ID, TokenVerifier
from services.settings import Settings
from tests.fixtures.app import TEST_JWT_SECRET
from tests.net import free_port
from tests.paths import ROOT


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APP_", "JWT_", "CORS_", "GRAPHQL_", "LOG_", "DATABASE_", "DATA_"))
    }
    return {**base, "DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1", **extra}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- token ---


async def test_token_prints_a_verifiable_jwt(tmp_path: Path) -> None:
    sub = uuid.uuid4()
    env = cli_env(tmp_path, JWT_SECRET=TEST_JWT_SECRET)
    result = run_cli("token", "--sub", str(sub), "--email", "t@example.com", "--ttl", "90", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token
    settings = Settings.from_env(env)
    claims = await TokenVerifier(settings).verify(token)
    assert (claims.sub, claims.email) == (sub, "t@example.com")
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 90
    assert payload["aud"] == "authenticated"


async def test_token_without_jwt_secret_uses_the_development_secret(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    result = run_cli("token", "--sub", str(DEMO_USER_ID), env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "jwt_secret").is_file()
    claims = await TokenVerifier(Settings.from_env(env)).verify(result.stdout.strip())
    assert claims.sub == DEMO_USER_ID


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sub", "not-a-uuid"], "--sub must be a UUID"),
        (["--sub", str(uuid.uuid4()), "--ttl", "0"], "--ttl"),
    ],
)
def test_token_bad_arguments(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_cli("token", *args, env=cli_env(tmp_path, JWT_SECRET=TEST_JWT_SECRET))
    assert_one_line_error(result, fragment)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "args", "variable"),
    [
        ({"LOG_LEVEL": "LOUD"}, [], "LOG_LEVEL"),
        ({"LOG_FORMAT": "logfmt"}, [], "LOG_FORMAT"),
        ({"APP_ENV": "staging"}, [], "APP_ENV"),
        ({"DATABASE_URL": "mysql://x/y"}, [], "DATABASE_URL"),
        ({"JWT_JWKS_FILE": "/nonexistent/jwks.json"}, [], "JWT_JWKS_FILE"),
        ({"JWT_JWKS_CACHE_SECONDS": "soon"}, [], "JWT_JWKS_CACHE_SECONDS"),
        ({"GRAPHQL_INTROSPECTION": "maybe"}, [], "GRAPHQL_INTROSPECTION"),
        ({"APP_ENV": "production", "JWT_SECRET": "short-secret"}, [], "JWT_SECRET"),
        ({"CORS_ALLOW_ORIGINS": "example.com/path"}, [], "CORS_ALLOW_ORIGINS"),
        ({}, ["--workers", "0"], "--workers"),
    ],
)
def test_bad_configuration_is_one_line_exit_2(
    tmp_path: Path, database_url: str, env: dict[str, str], args: list[str], variable: str
) -> None:
    full_env = cli_env(tmp_path, DATABASE_URL=database_url, JWT_SECRET=TEST_JWT_SECRET)
    full_env.update(env)
    result = run_cli("--port", str(free_port()), *args, env=full_env)
    assert_one_line_error(result, variable)
    assert "Traceback" not in result.stderr


# --- serving ---


class Served:
    """A `python server.py …` process; output goes to a file so it can never block."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "server.py", "--port", str(self.port), *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_healthy(self, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not healthy: {self.output[-3000:]}")

    def interrupt(self) -> int:
        """Ctrl-C: one SIGINT, then the exit code (graceful shutdown within 20 s)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for server in started:
        server.kill()


@pytest.mark.slow
def test_serve_prints_graphiql_url_answers_and_stops_on_ctrl_c(
    tmp_path: Path, database_url: str, serve: type[Served]
) -> None:
    env = cli_env(tmp_path, DATABASE_URL=database_url, JWT_SECRET=TEST_JWT_SECRET)
    server = serve(tmp_path, env)
    server.wait_healthy()
    assert f"GraphiQL: http://127.0.0.1:{server.port}/graphql" in server.output
    body = httpx.post(f"{server.url}/graphql", json={"query": "{ health { ok } }"}).json()
    assert body["data"] == {"health": {"ok": True}}
    assert "mc_graphql_operations_total" in httpx.get(f"{server.url}/metrics").text
    assert server.interrupt() in (0, 130)
    assert "Traceback" not in server.output
    assert TEST_JWT_SECRET not in server.output


@pytest.mark.slow
def test_workers_serve_through_the_app_factory(
    tmp_path: Path, database_url: str, serve: type[Served]
) -> None:
    env = cli_env(tmp_path, DATABASE_URL=database_url, JWT_SECRET=TEST_JWT_SECRET)
    server = serve(tmp_path, env, "--workers", "2")
    server.wait_healthy()
    workers = psutil.Process(server.proc.pid).children(recursive=True)
    python_workers = [p for p in workers if "python" in p.name().lower()]
    assert len(python_workers) >= 2, [p.cmdline() for p in workers]
    with httpx.Client(base_url=server.url) as http:
        for _ in range(20):
            body = http.post("/graphql", json={"query": "{ health { database } }"}).json()
            assert body["data"] == {"health": {"database": True}}
    assert server.interrupt() in (0, 130)
    assert "Traceback" not in server.output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_flag_prints_a_demo_token_and_loads_demo_data_once(
    tmp_path: Path, database_url: str, serve: type[Served]
) -> None:
    env = cli_env(tmp_path, DATABASE_URL=database_url, JWT_SECRET=TEST_JWT_SECRET)
    server = serve(tmp_path, env, "--demo")
    server.wait_healthy(seconds=110)
    token_lines = [
        ln for ln in server.output.splitlines() if ln.startswith("Authorization: Bearer ")
    ]
    assert len(token_lines) == 1, server.output
    token = token_lines[0].removeprefix("Authorization: Bearer ")
    body = httpx.post(
        f"{server.url}/graphql",
        json={"query": "{ me { id } watchlist { count } }"},
        headers={"authorization": f"Bearer {token}"},
    ).json()
    assert body["data"]["me"]["id"] == str(DEMO_USER_ID)
    assert body["data"]["watchlist"]["count"] > 0
    assert server.interrupt() in (0, 130)
    again = serve(tmp_path, env, "--demo")
    again.wait_healthy()
    assert "demo data set already loaded" in again.output
    assert again.interrupt() in (0, 130)
