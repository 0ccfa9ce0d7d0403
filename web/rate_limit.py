"""Query cost limits per operation and cost budgets per client, before anything executes.

Each operation's static cost (web/query_cost.py) is checked against GRAPHQL_MAX_COST
(QUERY_TOO_COSTLY) and then charged to its client's budget per minute (RATE_LIMITED with
Retry-After). The client is the token's user, else the connection's address: uvicorn's proxy
header handling has already replaced that with the forwarded one when the peer is listed in
FORWARDED_ALLOW_IPS. A subscription is charged once, when it starts. Every response carries
the cost in `extensions.cost`, answers served from the response cache too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

from graphql import DocumentNode, GraphQLError, build_schema, parse
from strawberry.extensions import SchemaExtension

from resolvers.context import Context
from services.cost_budget import CostBudgets
from services.errors import RateLimited
from services.settings import ANONYMOUS_COST_SHARE, Settings
from web.http_conventions import GraphQLSubResponse
from web.operation_guards import MAX_TOKENS
from web.query_cost import CostModel

QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
RATE_LIMITED = RateLimited.code
# Documents whose parse is kept for costing cached answers (which skip execution).
_PARSED_SIZE = 256


class QueryLimits:
    """The process's cost limit and client budgets; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.max_cost = settings.graphql_max_cost
        per_minute = settings.graphql_cost_per_minute
        self.users = CostBudgets(per_minute)
        self.anonymous = CostBudgets(int(per_minute * ANONYMOUS_COST_SHARE))
        self.model: CostModel | None = None
        self._parsed: OrderedDict[str, DocumentNode] = OrderedDict()

    def use_schema(self, sdl: str) -> None:
        """Cost against this schema (built from its SDL: only public graphql-core API)."""
        self.model = CostModel(build_schema(sdl))

    def cost(
        self, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
    ) -> int:
        """The operation's static cost."""
        if self.model is None:
            return 0
        return self.model.cost(document, operation_name, variables)

    def refuse_costly(self, cost: int) -> None:
        """Raise QUERY_TOO_COSTLY when `cost` is over the limit."""
        if cost > self.max_cost:
            raise GraphQLError(
                f"query cost {cost} is over the limit of {self.max_cost}; "
                "ask for fewer items or a shorter window",
                extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "limit": self.max_cost},
            )

    async def charge(self, context: Context, cost: int) -> None:
        """Spend `cost` of the client's budget, or raise RATE_LIMITED (HTTP 429 + Retry-After)."""
        user_id = await context.viewer_id_or_none()
        if user_id is not None:
            retry_after = self.users.charge(user_id, cost)
        else:
            retry_after = self.anonymous.charge(_client_address(context.request), cost)
        if retry_after is None:
            return
        if isinstance(context.response, GraphQLSubResponse):  # HTTP: 429 with Retry-After
            context.response.retry_after = retry_after
        raise GraphQLError(
            f"query cost budget used up; retry in {retry_after} s",
            extensions={"code": RATE_LIMITED, "retryAfter": retry_after},
        )

    async def cached_answer_cost(
        self,
        context: Context,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> int:
        """Cost and charge of an answer served from the response cache (no execution ran)."""
        document = self._parsed.get(query)
        if document is None:
            document = parse(query, max_tokens=MAX_TOKENS)  # it parsed when it was stored
            self._parsed[query] = document
            if len(self._parsed) > _PARSED_SIZE:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(query)
        cost = self.cost(document, operation_name, variables or {})
        await self.charge(context, cost)
        return cost


def _client_address(request: Any) -> str:
    client = getattr(request, "client", None)
    return client.host if client is not None else "unknown"


class QueryCostLimiter(SchemaExtension):
    """Refuses an operation over the cost limit or the client's budget; reports its cost."""

    def __init__(self, *, limits: QueryLimits) -> None:
        self.limits = limits
        self.cost = 0

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        if document is not None:
            limits = self.limits
            self.cost = limits.cost(document, execution.operation_name, execution.variables or {})
            limits.refuse_costly(self.cost)
            context = execution.context
            if isinstance(context, Context):
                await limits.charge(context, self.cost)
        yield

    def get_results(self) -> dict[str, Any]:
        return {"cost": self.cost}


def cost_extension(limits: QueryLimits) -> partial[QueryCostLimiter]:
    """The extension factory for the schema (a fresh extension per operation)."""
    return partial(QueryCostLimiter, limits=limits)
