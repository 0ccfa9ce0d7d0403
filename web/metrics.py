"""Prometheus metrics: GraphQL operations, latency, errors by code, subscribers, DB pool.

Metrics are per process (each uvicorn worker answers /metrics for itself).
Gauges that mirror state owned elsewhere (the alert hub's subscribers, the pool) are set at
scrape time, so the code that owns the state does not import this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from graphql import GraphQLError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from strawberry.extensions import SchemaExtension

OPERATIONS = Counter(
    "mc_graphql_operations_total",
    "GraphQL operations by operation type and outcome (ok, error).",
    ["operation_type", "status"],
)
OPERATION_SECONDS = Histogram(
    "mc_graphql_operation_duration_seconds",
    "Time to parse, validate and execute a GraphQL operation.",
    ["operation_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter(
    "mc_graphql_errors_total",
    "GraphQL errors returned to clients, by extensions.code.",
    ["code"],
)
HTTP_REQUESTS = Counter(
    "mc_http_requests_total",
    "HTTP requests by route, method and status code.",
    ["route", "method", "status"],
)
ACTIVE_SUBSCRIBERS = Gauge(
    "mc_graphql_active_subscribers",
    "Subscribers registered with this process's alert hub (streaming or replaying).",
)
WEBSOCKET_CONNECTIONS = Gauge(
    "mc_websocket_connections",
    "Open GraphQL WebSocket connections in this process.",
)
RESPONSE_CACHE = Counter(
    "mc_response_cache_total",
    "Cacheable GraphQL queries by outcome: hit, miss (executed and stored) or uncached.",
    ["result"],
)
RESPONSE_CACHE_BYTES = Gauge(
    "mc_response_cache_bytes", "Approximate size of this process's response cache."
)
DB_POOL_CONNECTIONS = Gauge(
    "mc_db_pool_connections",
    "asyncpg pool connections: size (open), idle, max.",
    ["state"],
)

UNKNOWN = "unknown"


class MetricsExtension(SchemaExtension):
    """Times every operation and counts it by type and outcome."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        failed = False
        try:
            yield
        except Exception:
            failed = True  # a guard refused the document before any result existed
            raise
        finally:
            operation_type = self._operation_type()
            result = getattr(self.execution_context, "result", None)
            if getattr(result, "errors", None):
                failed = True
            OPERATIONS.labels(operation_type, "error" if failed else "ok").inc()
            OPERATION_SECONDS.labels(operation_type).observe(time.perf_counter() - started)

    def _operation_type(self) -> str:
        try:
            return str(self.execution_context.operation_type.value)
        except Exception:
            return UNKNOWN


def count_errors(errors: Iterable[object]) -> None:
    """Counts the errors of a response (dicts or GraphQLErrors) by their `extensions.code`."""
    for error in errors:
        if isinstance(error, GraphQLError):
            extensions: Any = error.extensions
        else:
            extensions = error.get("extensions") if isinstance(error, Mapping) else None
        code = (extensions or {}).get("code") or UNKNOWN
        ERRORS.labels(str(code)).inc()


def observe_subscribers(count: int) -> None:
    """Copies the alert hub's subscriber count into the gauge (called at scrape time)."""
    ACTIVE_SUBSCRIBERS.set(count)


def observe_pool(pool: Any) -> None:
    """Copies the pool's current size into the gauge (called at scrape time)."""
    if pool is None:
        return
    DB_POOL_CONNECTIONS.labels("size").set(pool.get_size())
    DB_POOL_CONNECTIONS.labels("idle").set(pool.get_idle_size())
    DB_POOL_CONNECTIONS.labels("max").set(pool.get_max_size())


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus exposition text and its content type."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST
