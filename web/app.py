"""The Starlette app: /graphql, health, metrics and the explorer, and its lifespan."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from services.auth.tokens import TokenVerifier
from services.db import create_pool, resolve_database_url
from services.health import check_health, database_ready
from services.live.hub import AlertHub
from services.logs import configure_logging
from services.settings import Settings
from services.storage.factory import open_object_store
from web import metrics
from web.body_limit import RequestGuard
from web.explorer import explorer_routes
from web.graphql_app import GraphQLApp
from web.request_log import REQUEST_ID_HEADER, RequestLog
from web.unsubscribe import unsubscribe_routes


def create_app(settings: Settings, database_url: str | None = None) -> Starlette:
    """The Starlette app; `database_url` overrides settings (tests, embedded Postgres)."""
    graphql = GraphQLApp(settings, TokenVerifier(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dsn = database_url or resolve_database_url(settings)
        # Nothing the server runs changes session state (tests/web/test_pool_sessions.py), so
        # a released connection skips asyncpg's reset statement: one round trip per query.
        graphql.pool = await create_pool(
            dsn, statement_cache_size=settings.database_statement_cache_size, reset_session=False
        )
        # Every response-cache hit reads the version counters: on connections of their own, so
        # a hit never waits behind requests that hold every request connection.
        graphql.version_pool = await create_pool(
            dsn,
            max_size=2,
            statement_cache_size=settings.database_statement_cache_size,
            reset_session=False,
        )
        app.state.alert_hub = AlertHub.from_settings(dsn, graphql.pool, settings)
        await app.state.alert_hub.start()
        graphql.object_store = open_object_store(settings)
        try:
            yield
        finally:
            await app.state.alert_hub.stop()
            await graphql.version_pool.close()
            await graphql.pool.close()
            if graphql.object_store is not None:
                await graphql.object_store.close()

    async def health(request: Request) -> Response:
        report = await check_health(graphql.pool, graphql.object_store)
        return JSONResponse(report.as_json(), status_code=200 if report.ok else 503)

    async def livez(request: Request) -> Response:
        # The process answers: nothing else is checked, so a dependency blip never restarts it.
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        # Can serve: the database answers. The object store is left out on purpose: one R2
        # hiccup must not take every instance out of the load balancer (only prices need it).
        ready = await database_ready(graphql.pool)
        return JSONResponse({"ok": ready, "database": ready}, status_code=200 if ready else 503)

    def observe_state() -> None:
        metrics.observe_pool(graphql.pool)
        metrics.observe_subscribers(app.state.alert_hub.subscriber_count)
        metrics.RESPONSE_CACHE_BYTES.set(graphql.response_cache.bytes)

    async def metrics_endpoint(request: Request) -> Response:
        observe_state()
        body, content_type = metrics.render_metrics()
        return Response(body, media_type=content_type)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/api/health", health, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *explorer_routes(),
        *unsubscribe_routes(settings, lambda: graphql.pool),
    ]
    middleware = [
        Middleware(RequestLog),
        Middleware(RequestGuard),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "accept", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
            max_age=600,
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=metrics.with_worker_gauges(lifespan, observe_state),
    )
    app.state.graphql = graphql
    return app


def app_factory() -> Starlette:
    """Import-string factory for `--workers N` (each worker builds its own app)."""
    settings = Settings.from_env()
    configure_logging(settings)
    app = create_app(settings)
    tune_garbage_collector()
    return app


def tune_garbage_collector() -> None:
    """Fewer gen-0 collections than the default 700, but no collection big enough to stall.

    The default spends much CPU on a busy server (bench/subscriptions.py, 1,000 subscribers:
    260 µs per delivery; 36–56 µs at these settings). Thresholds of (100,000, 50, 1,000) had
    been chosen for that, but then each older-generation pass walks millions of objects: the
    cached watchlist under 32 connections had p99 43–127 ms against 13–22 ms with these
    (bench/watchlist_vs_postgraphile.py, same box, runs alternated).

    Called once the app is built: what exists by then (modules, the schemas, the app) lives as
    long as the process, so it is frozen out of every later collection, which then walks only
    what requests allocate.
    """
    gc.set_threshold(10_000, 10, 10)
    gc.collect()
    gc.freeze()
