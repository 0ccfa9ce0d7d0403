"""schema.graphql is the committed contract: it must equal the code's schema exactly."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from services.settings import Settings
from tests.paths import ROOT
from web.graphql_app import build_schema
from web.schema_export import schema

SNAPSHOT = ROOT / "schema.graphql"
HOW_TO_FIX = "the GraphQL schema changed: run `make schema` and commit schema.graphql"


def exported_sdl() -> str:
    """What `strawberry export-schema` writes (it prints str(schema) plus a newline)."""
    return str(schema) + "\n"


def snapshot_problem(committed: str, current: str) -> str | None:
    """None when equal, else how to fix it followed by a unified diff."""
    if committed == current:
        return None
    diff = difflib.unified_diff(
        committed.splitlines(keepends=True),
        current.splitlines(keepends=True),
        "schema.graphql (committed)",
        "schema (code)",
        n=2,
    )
    return f"{HOW_TO_FIX}\n{''.join(diff)}"


def test_snapshot_matches_the_code() -> None:
    assert SNAPSHOT.is_file(), f"schema.graphql is missing: {HOW_TO_FIX}"
    problem = snapshot_problem(SNAPSHOT.read_text(encoding="utf-8"), exported_sdl())
    assert problem is None, problem


def test_a_changed_schema_is_reported_with_the_fix() -> None:
    current = exported_sdl()
    changed = current.replace("  headline: String!\n", "", 1)
    assert changed != current
    problem = snapshot_problem(changed, current)
    assert problem is not None
    assert "make schema" in problem and "+  headline: String!" in problem


def test_snapshot_does_not_depend_on_app_env() -> None:
    production = Settings(app_env="production", jwt_secret="x" * 32, graphql_introspection=False)
    assert str(build_schema(production)) == str(schema)


def test_strawberry_cli_exports_the_same_text(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("strawberry")),
            "export-schema",
            "web.schema_export:schema",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert out.read_text(encoding="utf-8") == exported_sdl()


def test_snapshot_has_the_contract_roots() -> None:
    text = SNAPSHOT.read_text(encoding="utf-8")
    for root in ("type Query {", "type Mutation {", "type Subscription {"):
        assert root in text
