"""The server's pools release connections without asyncpg's reset round trip.

That is safe only while nothing the server runs on a pooled connection changes session
state: a SET, LISTEN, session advisory lock, temporary table, held cursor or prepared
statement by SQL would outlive the request and reach the next one. These tests read every
string constant of every module the server imports and refuse such statements. (The one
session object the database makes for itself, the cache-version triggers' `cache_noted`
temporary table, is empty outside a transaction: ON COMMIT DELETE ROWS, and asyncpg's reset
never dropped it either.)
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import asyncpg
from starlette.applications import Starlette

from tests.fixtures.app import GraphQLClient

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"server", "web", "resolvers", "schema", "services", "migrations"}
# Runs on a connection of its own, opened before the pools exist, and closed after.
OWN_CONNECTION_MODULES = {"migrations.runner"}
SESSION_STATEMENTS = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\s*\("
    r"|\b(UN)?LISTEN\s+[\w*\"]"
    # A statement that starts with SET (not SET LOCAL); an UPDATE's SET is inside a statement.
    r"|(\A|;)\s*SET\s+(SESSION\s+)?(?!LOCAL\b)[\w.]+\s*(=|TO\b)"
    r"|set_config\s*\([^)]*,\s*false\s*\)"
    r"|CREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s"
    r"|WITH\s+HOLD"
    r"|(\A|;)\s*PREPARE\s+\w+\s*(\(|AS\b)",
    re.IGNORECASE,
)


def _server_modules() -> list[ModuleType]:
    """The project's modules a fresh `import server` loads (this test run imports more)."""
    listing = subprocess.run(
        [sys.executable, "-c", "import server, sys; print(*sorted(sys.modules), sep=chr(10))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [
        name
        for name in listing
        if name.split(".")[0] in PROJECT_PACKAGES and name not in OWN_CONNECTION_MODULES
    ]
    return [importlib.import_module(name) for name in names]


def _statements(module: ModuleType) -> list[str]:
    """The module's string constants, docstrings left out (prose may name these words)."""
    tree = ast.parse(inspect.getsource(module))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_the_scan_finds_each_kind_of_session_statement() -> None:
    caught = [
        "SELECT pg_advisory_lock($1)",
        "LISTEN alerts",
        "SET statement_timeout = 0",
        "BEGIN; SET SESSION work_mem TO '64MB'",
        "SELECT set_config('app.user', $1, false)",
        "CREATE TEMP TABLE t (x int)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE q AS SELECT 1",
    ]
    allowed = [
        "SELECT pg_advisory_xact_lock($1)",
        "UPDATE users SET email = $2 WHERE id = $1",
        "UPDATE users\nSET email = $2 WHERE id = $1",
        "Set the investing style and watch 1-50 tickers",
        "SET LOCAL statement_timeout = 0",
        "SELECT set_config('app.user', $1, true)",
    ]
    assert [s for s in caught if not SESSION_STATEMENTS.search(s)] == []
    assert [s for s in allowed if SESSION_STATEMENTS.search(s)] == []


def test_no_server_module_changes_session_state_on_a_pooled_connection() -> None:
    modules = _server_modules()
    assert len(modules) > 50  # the scan really covers the server
    found = {
        module.__name__: statement
        for module in modules
        for statement in _statements(module)
        if SESSION_STATEMENTS.search(statement)
    }
    assert found == {}


async def test_released_connections_skip_the_reset_round_trip(
    app: Starlette, gql: GraphQLClient, pool: asyncpg.Pool
) -> None:
    graphql = app.state.graphql
    assert "errors" not in await gql("{ popularStocks { ticker } }")
    last_statement = "SELECT query FROM pg_stat_activity WHERE pid = $1"
    async with graphql.pool.acquire() as conn:
        request_connection = conn.get_server_pid()
    # What the request's connection last ran is the request's own query: no RESET ALL after it.
    last = await pool.fetchval(last_statement, request_connection)
    assert last and "RESET ALL" not in last
