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
PINNED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]


def _declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def _top_level_imports(paths: list[str]) -> set[str]:
    names: set[str] = set()
    for relative in paths:
        base = ROOT / relative
        files = [base] if base.is_file() else base.rglob("*.py")
        for file in files:
            if "node_modules" in file.parts:
                continue
            for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - OUR_PACKAGES - NOT_DISTRIBUTIONS


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
    for module, distributions in _distributions_of(_top_level_imports(RUNTIME_SOURCES)).items():
        assert distributions & declared, f"`import {module}` ({distributions}) is not declared"


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
