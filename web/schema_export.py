"""The module-level Schema that `make schema` exports to schema.graphql (Strawberry's CLI)."""

from __future__ import annotations

from services.settings import Settings
from web.graphql_app import build_schema

# Plain defaults, not the environment: the SDL must not depend on who runs the export.
schema = build_schema(Settings())
