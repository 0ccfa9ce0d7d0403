"""The one Schema object, with the guards SPEC §5 asks for."""

from __future__ import annotations

import strawberry

from resolvers.errors import AppSchema
from resolvers.execution import FastLeafExecutionContext
from resolvers.guards import guard_extensions
from resolvers.metrics import MetricsExtension
from resolvers.root import Mutation, Query
from resolvers.subscriptions import Subscription
from services.settings import Settings


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema for these settings (introspection and limits depend on APP_ENV)."""
    return AppSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Metrics first: it wraps (and so times and counts) everything the guards refuse.
        extensions=[MetricsExtension, *guard_extensions(settings)],
        execution_context_class=FastLeafExecutionContext,
    )
