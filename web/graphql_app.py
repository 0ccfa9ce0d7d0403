"""The one Schema object and the Strawberry ASGI app that serves it over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from graphql import build_schema as build_sdl_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.types import HTTPMethod
from strawberry.http.websocket_origin import normalize_allowed_origins
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from resolvers.context import Context
from resolvers.root import Mutation, Query
from resolvers.subscriptions import Subscription, authenticate_connection
from services import cache_versions
from services.auth.tokens import TokenVerifier
from services.db import database_outage
from services.errors import ConfigurationError, DatabaseUnavailable, Unauthenticated
from services.logs import LOG_TEXT_MAX_CHARS, add_log_context
from services.settings import Settings
from services.storage.object_store import ObjectStore
from services.users import EnsuredUsers
from web import metrics
from web.errors import AppSchema, refusal_response
from web.execution import DirectExecutionContext
from web.explorer import explorer_page
from web.http_conventions import (
    GRAPHQL_RESPONSE_JSON,
    GraphQLSubResponse,
    OperationTypeExtension,
    PersistedQueries,
    PersistedQueryError,
    PersistedQueryFailure,
    etag_matches,
    etag_of,
    is_request_error,
    wants_graphql_response,
    without_data,
)
from web.metrics import MetricsExtension
from web.operation_guards import graphiql_enabled, guard_extensions
from web.rate_limit import QueryLimits, cost_extension
from web.request_log import OperationLogExtension
from web.response_cache import ResponseCache
from web.websocket_limits import TOO_MANY, SocketLimits
from web.websocket_protocol import CheckedTransportWSHandler

log = logging.getLogger(__name__)

# RFC 9211 Cache-Status values (see _http_conventions for those of uncached requests).
CACHE_STATUS = "material-changes"
CACHE_HIT = f"{CACHE_STATUS}; hit"
CACHE_MISS = f"{CACHE_STATUS}; fwd=miss"
CACHE_BYPASS = f"{CACHE_STATUS}; fwd=bypass"
CACHE_METHOD = f"{CACHE_STATUS}; fwd=method"

T = TypeVar("T")

# RFC 6455 "Try Again Later": the server cannot take the connection now; the token was fine.
WS_TRY_AGAIN_LATER = 1013


def build_schema(settings: Settings, limits: QueryLimits | None = None) -> strawberry.Schema:
    """The schema for these settings (introspection and limits depend on APP_ENV)."""
    limits = limits or QueryLimits(settings)
    execution_context = DirectExecutionContext.for_schema()
    schema = AppSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Metrics first: it wraps (and so times and counts) everything the guards refuse.
        extensions=[
            MetricsExtension,
            OperationLogExtension,
            OperationTypeExtension,
            *guard_extensions(settings),
            cost_extension(limits),
        ],
        execution_context_class=execution_context,
    )
    limits.use_schema(str(schema))
    execution_context.learn(schema)
    return schema


class _TextFrameWebSocketAdapter(ASGIWebSocketAdapter):
    """Sends every graphql-transport-ws message as a text frame, whatever encode_json returns."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(self.view.encode_json_string(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        """Close once: a socket already closed with a more precise code stays so."""
        if self.ws.application_state is not WebSocketState.DISCONNECTED:
            await super().close(code, reason)


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app with our per-request context, metrics and origin allowlist."""

    websocket_adapter_class = _TextFrameWebSocketAdapter
    graphql_transport_ws_handler_class = CheckedTransportWSHandler

    def __init__(self, settings: Settings, verifier: TokenVerifier) -> None:
        self.query_limits = QueryLimits(settings)
        super().__init__(
            build_schema(settings, self.query_limits),
            graphql_ide="graphiql" if graphiql_enabled(settings) else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=_websocket_origins(settings),
        )
        self.settings = settings
        self.verifier = verifier
        self.pool: Any = None  # set by the app's lifespan
        # The response cache's version reads; the request pool when unset (set by the lifespan).
        self.version_pool: Any = None
        self._versions: cache_versions.CoalescingReader | None = None
        self.object_store: ObjectStore | None = None
        self.ensured_users = EnsuredUsers()
        self.persisted_queries = PersistedQueries(int(settings.apq_store_mb * 2**20))
        self.socket_limits = SocketLimits(settings.ws_max_connections_per_user)
        self.response_cache = ResponseCache(
            int(settings.response_cache_mb * 2**20), build_sdl_schema(self.schema.as_str())
        )
        # Cache keys being executed now → whether the answer was stored (single flight).
        self._flights: dict[tuple[str, ...], asyncio.Future[bool]] = {}

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
        """graphql-transport-ws connection_init: a valid bearer token or close 4403.

        When the user's row cannot be ensured because the database is down, the socket is
        closed with 1013 instead (not 4403, which would tell the client its token is bad).
        """
        try:
            accepted = await authenticate_connection(context)
        except Exception as exc:
            outage = database_outage(exc)
            if outage is None:
                raise
            log.warning("WebSocket connection_init: %s: %s", type(exc).__name__, exc)
            await context.request.close(code=WS_TRY_AGAIN_LATER, reason=outage.message)
            raise ConnectionRejectionError() from None
        user_id = await context.require_user_id()
        socket = context.request
        if not self.socket_limits.admit(
            id(socket.scope), user_id, context.token_expires_at, socket.close
        ):
            limit = self.socket_limits.max_per_user
            await socket.close(code=TOO_MANY, reason=f"at most {limit} sockets per user")
            raise ConnectionRejectionError()
        return accepted

    async def render_graphql_ide(self, request: Any) -> Response:
        """GraphiQL from this server's npm-installed assets; Strawberry's CDN page without them."""
        return explorer_page() or await super().render_graphql_ide(request)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Not for a GET that carries a persisted query's hash instead of the query text."""
        return super().should_render_graphql_ide(request) and (
            request.query_params.get("extensions") is None
        )

    def decode_json(self, data: str | bytes) -> object:
        """Strict JSON (orjson): any hostile body fails as a JSONDecodeError, never a crash.

        That is a 400 over HTTP and close 4400 on a WebSocket. It refuses invalid UTF-8, lone
        surrogates, NaN/Infinity and nesting deeper than 1,024, where the json module raised
        UnicodeDecodeError, RecursionError or (a 5,000-digit number) ValueError: HTTP 500.
        Integers beyond 64 bits become floats, which GraphQL's Int refuses as BAD_USER_INPUT.
        """
        return orjson.loads(data)

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

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, plus persisted queries, the response cache and 405 for GET mutations."""
        if not isinstance(request_data.operation_name, str | None):
            raise HTTPException(400, "The GraphQL operation's `operationName` must be a string")
        try:
            request_data = self.persisted_queries.resolve(request_data)
        except PersistedQueryError as exc:
            return exc.as_result()
        assert isinstance(sub_response, GraphQLSubResponse)  # get_sub_response's
        method = request_adapter.method
        try:
            result = await self._cached_execute(
                sub_response, context, root_value, request_data, method
            )
        except _CacheUnavailable as unavailable:
            # Executing would only wait for the same database again (a hung host: once more
            # the connect timeout); answer as execution would have.
            outage = unavailable.outage
            cause = type(unavailable.cause).__name__
            log.warning("database unavailable for the response cache: %s", cause)
            sub_response.operation_type = "query"  # only queries are ever cached
            error = GraphQLError(outage.message, extensions={"code": outage.code})
            result = ExecutionResult(data=None, errors=[error])
        # No field ran (parse, validation or variable errors; an outage before execution).
        sub_response.request_error = is_request_error(result)
        if not sub_response.request_error:  # it parsed and validated: worth keeping
            self.persisted_queries.remember(request_data)
        return result

    async def _cached_execute(
        self,
        sub_response: GraphQLSubResponse,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
        method: HTTPMethod,
    ) -> ExecutionResult:
        """The answer from the cache, or executed (once per key at a time) and stored."""
        lookup = await self._cache_plan(context, request_data)
        if lookup is None:
            return await self._execute(context, root_value, request_data, method)
        flights = self._flights
        alongside = False
        while True:
            found = await _outage_guard(self._cache_lookup(context, lookup))
            if isinstance(found, ExecutionResult):
                metrics.RESPONSE_CACHE.labels("hit").inc()
                sub_response.cache_status = CACHE_HIT
                sub_response.operation_type = "query"  # only queries are ever cached
                return await self._costed(context, request_data, found)
            flight = flights.get(lookup.key)
            if flight is None:
                break
            # Another request is executing this very answer: wait for it, then look again
            # (a fresh read, so a write committed before this request still shows). When it
            # stored nothing (errors, cancelled, raced by a write) execute alongside instead.
            if not await asyncio.shield(flight):
                metrics.RESPONSE_CACHE_COLLAPSED.labels("alongside").inc()
                alongside = True
                break
            metrics.RESPONSE_CACHE_COLLAPSED.labels("shared").inc()
        sub_response.cache_status = CACHE_MISS
        metrics.RESPONSE_CACHE.labels("miss").inc()
        mine = None if alongside else asyncio.get_running_loop().create_future()
        if mine is not None:
            flights[lookup.key] = mine
        stored = False
        try:
            context.read_scopes = cache_versions.ReadScopes(
                lookup.base_scopes, watcher_counts=lookup.watcher_counts
            )
            result = await self._execute(context, root_value, request_data, method)
            if not result.errors and result.data is not None:
                cost = (result.extensions or {}).get("cost")
                stored = await self._store(context, found, result.data, cost)
            return result
        finally:
            if mine is not None:
                del flights[lookup.key]
                mine.set_result(stored)

    async def _costed(
        self, context: Context, request_data: GraphQLRequestData, found: ExecutionResult
    ) -> ExecutionResult:
        """A cached answer with its cost reported and charged like an executed one."""
        assert request_data.query is not None
        cost = (found.extensions or {}).get("cost")
        try:
            if isinstance(cost, int):  # stored with the answer: no costing of the document
                await self.query_limits.charge(context, cost)
            else:
                cost = await self.query_limits.cached_answer_cost(
                    context,
                    request_data.query,
                    request_data.operation_name,
                    request_data.variables,
                )
        except GraphQLError as refused:
            return ExecutionResult(data=None, errors=[refused], extensions={"cost": 0})
        return ExecutionResult(data=found.data, errors=None, extensions={"cost": cost})

    def _version_reader(self, pool: Any) -> cache_versions.CoalescingReader:
        """One reader per pool: concurrent cache lookups share their counter reads."""
        reader = self._versions
        if reader is None or reader.db is not pool:
            reader = self._versions = cache_versions.CoalescingReader(pool)
        return reader

    async def _cache_plan(
        self, context: Context, request_data: GraphQLRequestData
    ) -> _Lookup | None:
        """How this request's answer is cached, or None when it is not."""
        cache = self.response_cache
        query = request_data.query
        plan = cache.plan(query, request_data.operation_name) if cache.enabled else None
        if plan is None or query is None:
            return None
        if plan.public:
            viewer = cache_versions.PUBLIC
            scopes: tuple[str, ...] = (cache_versions.PUBLIC,)
        else:
            try:
                user_id = await _outage_guard(context.require_user_id())
            except Unauthenticated:
                metrics.RESPONSE_CACHE.labels("uncached").inc()
                return None  # execution answers UNAUTHENTICATED
            viewer = cache_versions.user_scope(user_id)
            scopes = (cache_versions.PUBLIC, viewer)
        key = cache.key(viewer, query, request_data.variables, request_data.operation_name)
        if key is None:
            metrics.RESPONSE_CACHE.labels("uncached").inc()
            return None
        return _Lookup(key, scopes, plan.operation_name, plan.watcher_counts)

    async def _cache_lookup(self, context: Context, lookup: _Lookup) -> ExecutionResult | _Read:
        """The cached answer, or what was read to store a fresh one under."""
        cache = self.response_cache
        scopes = cache.scopes(lookup.key) or lookup.base_scopes
        reading = await self._version_reader(self.version_pool or context.pool).reading(scopes)
        answer = cache.get(lookup.key, scopes, reading.of(scopes))
        if answer is not None:
            name = lookup.operation_name
            # No execution names it; the name is the client's text.
            add_log_context(operation=name[:LOG_TEXT_MAX_CHARS] if name else None)
            cost = None if answer.cost is None else {"cost": answer.cost}
            return ExecutionResult(data=answer.data(), errors=None, extensions=cost)
        return _Read(lookup.key, dict(zip(scopes, reading.of(scopes), strict=True)), reading)

    async def _store(self, context: Context, read: _Read, data: dict[str, Any], cost: Any) -> bool:
        """Store an executed answer under versions that predate its execution, if any."""
        try:
            return await self._store_settled(
                context, read, data, cost if isinstance(cost, int) else None
            )
        except Exception as exc:
            if database_outage(exc) is None:
                raise
            log.warning("database unavailable to store a cached answer: %s", type(exc).__name__)
            return False

    async def _store_settled(
        self, context: Context, read: _Read, data: dict[str, Any], cost: int | None
    ) -> bool:
        assert context.read_scopes is not None
        scopes = tuple(sorted(context.read_scopes.scopes))
        versions = dict(read.versions)
        unread = [scope for scope in scopes if scope not in versions]
        if unread:
            # Scopes first met while executing: their versions now, if every bump they count
            # had committed before the lookup's snapshot (and so before execution began).
            settled = await cache_versions.settled_versions(
                context.pool, unread, read.reading.snapshot
            )
            if settled is None:
                return False  # a write raced this execution: the next request executes again
            versions.update((scope, settled.get(scope, 0)) for scope in unread)
        self.response_cache.put(read.key, scopes, tuple(versions[s] for s in scopes), data, cost)
        return True

    async def _execute(
        self,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
        method: HTTPMethod,
    ) -> ExecutionResult:
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=OperationType.from_http(method),
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            status = 405 if method == "GET" else 400
            raise HTTPException(status, exc.as_http_error_reason(method)) from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        metrics.count_errors(response.get("errors") or ())
        if (
            wants_graphql_response(request.headers.get("accept"))
            and is_request_error(result)
            and not isinstance(result, PersistedQueryFailure)
        ):
            return without_data(dict(response))  # type: ignore[return-value]
        return response

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """What the request's steps fill in for the HTTP conventions (GraphQLSubResponse)."""
        headers = request.headers
        return GraphQLSubResponse(headers.get("accept"), headers.get("if-none-match"))

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """Strawberry's, then the HTTP conventions: media type, status, ETag and 304."""
        response = super().create_response(response_data, sub_response)
        if not isinstance(sub_response, GraphQLSubResponse):
            return response
        return _http_conventions(sub_response, response)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope=scope, receive=receive)
            try:
                response = await self.run(request)
            except HTTPException as exc:
                response = refusal_response(exc.status_code, exc.reason)
            await response(scope, receive, send)
            return
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.socket_limits.release(id(scope))
            metrics.WEBSOCKET_CONNECTIONS.dec()


@dataclass(frozen=True)
class _Lookup:
    """A cacheable request: its entry key and the scopes every answer of it reads."""

    key: tuple[str, ...]
    base_scopes: tuple[str, ...]
    operation_name: str | None
    watcher_counts: bool


@dataclass(frozen=True)
class _Read:
    """A miss: the versions read before executing it (by scope) and the reading's snapshot."""

    key: tuple[str, ...]
    versions: dict[str, int]
    reading: cache_versions.Reading


class _CacheUnavailable(Exception):
    """The database failed the response cache's own statement (not the query's)."""

    def __init__(self, cause: Exception, outage: DatabaseUnavailable) -> None:
        super().__init__(outage.message)
        self.cause = cause
        self.outage = outage


async def _outage_guard(awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result; a database outage becomes _CacheUnavailable."""
    try:
        return await awaitable
    except Exception as exc:
        outage = database_outage(exc)
        if outage is None:
            raise
        raise _CacheUnavailable(exc, outage) from exc


def _websocket_origins(settings: Settings) -> tuple[str, ...]:
    """CORS_ALLOW_ORIGINS, validated the way Strawberry's origin check needs them."""
    try:
        normalize_allowed_origins(settings.cors_allow_origins)
    except ValueError as exc:
        raise ConfigurationError(f"CORS_ALLOW_ORIGINS: {exc}") from None
    return settings.cors_allow_origins


def _http_conventions(facts: GraphQLSubResponse, response: Response) -> Response:
    """Media type and status for graphql-response+json; ETag and 304 for query responses."""
    if facts.graphql_response:
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        if facts.request_error:
            response.status_code = 400
    if facts.retry_after is not None:  # over the client's cost budget, whatever the media type
        response.status_code = 429
        response.headers["retry-after"] = str(facts.retry_after)
    operation_type = facts.operation_type
    cache_status = facts.cache_status or (
        CACHE_METHOD if operation_type == "mutation" else CACHE_BYPASS
    )
    response.headers["cache-status"] = cache_status
    if response.status_code != 200 or operation_type != "query":
        return response
    # Answers differ by token and by media type: no shared cache may mix them up.
    response.headers["vary"] = "Accept, Authorization"
    etag = etag_of(bytes(response.body))
    response.headers["etag"] = etag
    if etag_matches(facts.if_none_match, etag):
        headers = {"etag": etag, "vary": "Accept, Authorization", "cache-status": cache_status}
        return Response(status_code=304, headers=headers)
    return response
