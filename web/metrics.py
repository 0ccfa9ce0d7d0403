"""Prometheus metrics: GraphQL operations, latency, errors by code, subscribers, DB pool.

One process: the default registry. With `--workers N` (multiprocess mode) every worker
writes its values to files in PROMETHEUS_MULTIPROC_DIR and any worker's /metrics answers for
all of them: counters and histograms summed over every worker that ever ran since the
server started (so they never go backwards when a worker dies), gauges summed over the
living ones.
Gauges that mirror state owned elsewhere (the alert hub's subscribers, the pool) are set at
scrape time, and in multiprocess mode also every few seconds by each worker, so the code
that owns the state does not import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from graphql import GraphQLError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client import generate_latest as _generate_latest
from starlette.types import StatelessLifespan
from strawberry.extensions import SchemaExtension

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
GAUGE_REFRESH_SECONDS = 5.0

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
    "Subscribers registered with the alert hubs (streaming or replaying).",
    multiprocess_mode="livesum",
)
WEBSOCKET_CONNECTIONS = Gauge(
    "mc_websocket_connections",
    "Open GraphQL WebSocket connections.",
    multiprocess_mode="livesum",
)
RESPONSE_CACHE = Counter(
    "mc_response_cache_total",
    "Cacheable GraphQL queries by outcome: hit, miss (executed) or uncached.",
    ["result"],
)
# Labelled, so that no process writes a sample before it counts one (the multiprocess view
# has a file per process that has samples; the supervisor of --workers N must have none).
RESPONSE_CACHE_COLLAPSED = Counter(
    "mc_response_cache_collapsed_total",
    "Cache misses that waited for another request executing the same answer (single flight), "
    "by what followed: shared (its answer was stored) or alongside (executed on their own).",
    ["then"],
)
RESPONSE_CACHE_BYTES = Gauge(
    "mc_response_cache_bytes",
    "Approximate size of the response caches.",
    multiprocess_mode="livesum",
)
DB_POOL_CONNECTIONS = Gauge(
    "mc_db_pool_connections",
    "asyncpg pool connections: size (open), idle, max.",
    ["state"],
    multiprocess_mode="livesum",
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
    """The Prometheus exposition text and its content type (all workers' in multiprocess mode)."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not directory:
        return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return _generate_latest(registry), CONTENT_TYPE_LATEST


@contextlib.contextmanager
def multiprocess_directory(configured: Path | None) -> Iterator[Path]:
    """Multiprocess mode for the workers the parent starts inside the block."""
    # Workers are spawned, so their prometheus_client reads the variable on import. A
    # temporary directory is removed afterwards; a configured one loses an earlier run's files.
    directory = configured or Path(tempfile.mkdtemp(prefix="mc-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for stale in directory.glob("*.db"):
        if not stale.name.endswith(own):  # this process's own files are open and current
            stale.unlink(missing_ok=True)
    previous = os.environ.get(MULTIPROC_DIR_VARIABLE)
    os.environ[MULTIPROC_DIR_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        else:
            os.environ[MULTIPROC_DIR_VARIABLE] = previous
        if configured is None:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            # Already set when this process imported prometheus_client, its gauges are files
            # here too: withdraw them like a worker's.
            multiprocess.mark_process_dead(os.getpid(), str(directory))


def with_worker_gauges(
    lifespan: StatelessLifespan[Any], observe: Callable[[], None]
) -> StatelessLifespan[Any]:
    """`lifespan`; in multiprocess mode also `observe()` every few seconds and, at exit,
    this worker's gauges withdrawn (mark_process_dead)."""

    @contextlib.asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[None]:
        async with lifespan(app):
            if not os.environ.get(MULTIPROC_DIR_VARIABLE):
                yield
                return
            # A worker that no scrape reaches would otherwise keep its startup values.
            refresher = asyncio.create_task(_refresh_gauges(observe))
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
                multiprocess.mark_process_dead(os.getpid())

    return wrapped


async def _refresh_gauges(observe: Callable[[], None]) -> None:
    while True:
        try:
            observe()
        except Exception:
            log.exception("metrics: could not refresh this worker's gauges")
        await asyncio.sleep(GAUGE_REFRESH_SECONDS)


def _forget_dead_workers(directory: str) -> None:
    """Withdraws the gauges of workers that died without their lifespan ending (SIGKILL)."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: the pid was reused, not ours to judge
    return True
