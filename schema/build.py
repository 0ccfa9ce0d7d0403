"""The one Schema object, with the guards SPEC §5 asks for."""

from __future__ import annotations

import strawberry

from resolvers.guards import guard_extensions
from resolvers.metrics import MetricsExtension
from resolvers.root import Query
from services.settings import Settings


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema for these settings (introspection and limits depend on APP_ENV)."""
    return strawberry.Schema(
        query=Query,
        # Metrics first: it wraps (and so times and counts) everything the guards refuse.
        extensions=[MetricsExtension, *guard_extensions(settings)],
    )
