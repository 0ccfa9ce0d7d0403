"""`@cacheScope`: a field whose answer is not the same for everyone says so where it is declared.

The response cache (web/response_cache.py) reads these from the schema: a query that selects
a VIEWER field anywhere is kept per user, one that selects an UNCACHED field is never kept,
and any other query is shared by everyone. A field that reads the signed-in user (the
context's token or user row) must carry VIEWER unless every path to it already crosses a
VIEWER field; tests/web/test_cache_privacy.py walks the schema and checks this by executing
each field under a context that records viewer access.
"""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.schema_directive import Location

DIRECTIVE_NAME = "cacheScope"


@strawberry.enum(description="Who may share a cached answer that selects the field.")
class CacheScope(Enum):
    VIEWER = strawberry.enum_value(
        "VIEWER", description="Depends on the signed-in user: kept per user."
    )
    UNCACHED = strawberry.enum_value(
        "UNCACHED", description="Live or relative to the current time: never kept."
    )
    WATCHER_COUNTS = strawberry.enum_value(
        "WATCHER_COUNTS",
        description="A count of the stock's watchers: kept until the count of a shown stock "
        "changes.",
    )


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name=DIRECTIVE_NAME,
    description="How a response cache may keep answers that select this field "
    "(unmarked fields: shared by everyone).",
)
class CacheScopeDirective:
    scope: CacheScope


# What fields put in `directives=[...]`.
PER_VIEWER = CacheScopeDirective(scope=CacheScope.VIEWER)
NEVER_CACHED = CacheScopeDirective(scope=CacheScope.UNCACHED)
PER_WATCHER_COUNT = CacheScopeDirective(scope=CacheScope.WATCHER_COUNTS)
