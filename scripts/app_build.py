"""PEP 517 backend: setuptools, but editable ("app mode") installs only.

The project's top-level packages have generic names (`schema`, `services`, `web`, ...). A wheel
installed into a shared site-packages would shadow unrelated PyPI packages of the same names,
so building one is refused with instructions; the editable install keeps the code in the
checkout and exposes only the listed packages and the console scripts inside the app's venv.
"""

from __future__ import annotations

from typing import Any

from setuptools import build_meta as _setuptools

INSTALL_HINT = (
    "material-changes is an application, not a library: install it into its own virtualenv "
    "in app mode, from the lock file:\n"
    "    python -m pip install --require-hashes -r requirements-dev.lock   # or requirements.lock\n"
    "    python -m pip install --no-deps --no-build-isolation -e .\n"
    "(`make install` does this). A wheel would put packages named `schema`, `services`, `web` "
    "... into site-packages, where they collide with unrelated distributions."
)

# The hooks pip calls for metadata, sdists and editable installs are setuptools' own.
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_editable = _setuptools.build_editable
build_sdist = _setuptools.build_sdist


class WheelRefused(RuntimeError):
    """A non-editable install was asked for."""


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Refuse before any download: a wheel is never built."""
    raise WheelRefused(INSTALL_HINT)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    """Refuse: see INSTALL_HINT."""
    raise WheelRefused(INSTALL_HINT)


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Refuse: see INSTALL_HINT."""
    raise WheelRefused(INSTALL_HINT)
