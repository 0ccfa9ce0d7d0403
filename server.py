"""The ASGI app and the `python server.py` entry point."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL

from resolvers.context import Context
from schema.build import build_schema
from services.auth import TokenVerifier
from services.db import create_pool, resolve_database_url
from services.errors import ConfigurationError
from services.settings import Settings

log = logging.getLogger("server")


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app with our per-request context."""

    def __init__(self, settings: Settings, verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(build_schema(settings), **kwargs)
        self.settings = settings
        self.verifier = verifier
        self.pool: Any = None

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return Context(
            pool=self.pool,
            settings=self.settings,
            verifier=self.verifier,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )


def create_app(settings: Settings, database_url: str | None = None) -> Starlette:
    """The Starlette app; `database_url` overrides settings (tests, embedded Postgres)."""
    graphql = GraphQLApp(settings, TokenVerifier(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dsn = database_url or resolve_database_url(settings)
        graphql.pool = await create_pool(dsn)
        try:
            yield
        finally:
            await graphql.pool.close()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python server.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(create_app(settings), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
