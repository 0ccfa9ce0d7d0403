"""Property-based fuzzing of our schema over real HTTP and WebSocket against a server process.

hypothesis-graphql generates valid operations (POSITIVE) and operations with one schema
violation (NEGATIVE) from schema.graphql; a second generator declares every argument of a root
field as a variable and sends random JSON for it. Whatever arrives, the answer is never a
5xx, never an INTERNAL error, never a traceback or SQL, and every error has a message and a
code. Examples are derandomized (the same cases on every run) and no example database is
written. Failures found here are kept as named tests in test_hostile_input.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis_graphql import Mode, mutations, queries
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from services.settings import Settings
from tests.fixtures.hostile import HostileServer, assert_clean_message, assert_clean_response
from tests.fixtures.ws import PROTOCOL
from tests.paths import ROOT
from web.graphql_app import build_schema
from web.query_cost import DEFAULT_MAX_COST
from web.rate_limit import QueryLimits

pytestmark = pytest.mark.usefixtures("server_log_stays_clean")

SDL = (ROOT / "schema.graphql").read_text()
SCHEMA = graphql.build_schema(SDL)


def fuzz_settings(examples: int) -> settings:
    """Derandomized (the same cases every run, for CI), no example database in the repo."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


# Plausible, extreme and malformed text for our custom scalars (inlined as string literals).
DATE_TEXT = st.one_of(
    st.dates().map(lambda day: day.isoformat()),
    st.sampled_from(["0001-01-01", "9999-12-31", "99999-01-01", "2024-02-30", "", "today"]),
    st.text(max_size=20),
)
DATETIME_TEXT = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2024-01-01T00:00:00",
            "2024-01-01T25:00:00Z",
            "2024-01-01",
        ]
    ),
    st.text(max_size=30),
)
CUSTOM_SCALARS = {
    "Date": DATE_TEXT.map(lambda text: graphql.StringValueNode(value=text)),
    "DateTime": DATETIME_TEXT.map(lambda text: graphql.StringValueNode(value=text)),
}

# Random JSON for variables: the usual values plus what breaks naive servers.
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=5).map(lambda t: t + "\x00"),
    st.sampled_from(["AAPL", "ko", " brk.b ", "TREND_BREAK", "VALUE", "", "0" * 1000]),
    st.uuids().map(str),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


class Tally:
    """Checks each answer and counts the cases sent and those that reached a resolver.

    A case reached a resolver when the answer has data or an error with a field path. The
    counts are printed (pytest -s); a generator whose valid operations never got that far
    would test nothing but the parser and validation, so positive tests assert some did.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.cases = 0
        self.executed = 0

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        print(f"\n{self.name}: {self.cases} generated cases, {self.executed} reached a resolver")

    def check(self, response: httpx.Response) -> None:
        self.cases += 1
        # 405: a mutation over GET; 429: over the client's cost budget. Anything else (a
        # redirect, a 404) means the case missed.
        assert response.status_code in (200, 400, 405, 429), (response.status_code, response.text)
        body = assert_clean_response(response)
        assert isinstance(body, dict), response.text
        errors = body.get("errors") or []
        check_cost(response, body)
        if body.get("data") or any(error.get("path") for error in errors):
            self.executed += 1


REFUSED_BEFORE_THE_SCHEMA = frozenset(
    {"BAD_USER_INPUT", "PERSISTED_QUERY_NOT_FOUND", "PERSISTED_QUERY_NOT_SUPPORTED"}
)


def check_cost(response: httpx.Response, body: dict[str, Any]) -> None:
    """Cost is reported; over the limit is always QUERY_TOO_COSTLY, never executed; 429 says
    RATE_LIMITED and when to retry."""
    codes = [(error.get("extensions") or {}).get("code") for error in body.get("errors") or []]
    if response.status_code == 429:
        assert codes == ["RATE_LIMITED"] and int(response.headers["retry-after"]) >= 1, body
        return
    cost = (body.get("extensions") or {}).get("cost")
    assert isinstance(cost, int) and cost >= 0, body
    if cost == 0 and codes and set(codes) <= REFUSED_BEFORE_THE_SCHEMA:
        assert body.get("data") is None, body  # refused before reaching the schema
    if cost > DEFAULT_MAX_COST:
        assert codes == ["QUERY_TOO_COSTLY"] and body.get("data") is None, body
    if "QUERY_TOO_COSTLY" in codes:
        assert cost > DEFAULT_MAX_COST, body


@pytest.fixture(scope="module", autouse=True)
def hypothesis_storage_outside_the_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """database=None keeps no examples, but Hypothesis still caches constants and Unicode
    tables under ./.hypothesis; this keeps the checkout clean."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture
def http(hostile_server: HostileServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{hostile_server.process.port}", timeout=30
    ) as client:
        yield client


def post(
    http: httpx.Client,
    query: str,
    variables: Any = None,
    *,
    token: str | None,
    accept: str | None = None,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["accept"] = accept
    return http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def token_choice(server: HostileServer) -> st.SearchStrategy[str | None]:
    """No token, a valid one, or garbage (public fields ignore a bad token)."""
    return st.sampled_from([None, server.token, "not.a.jwt"])


ACCEPTS = st.sampled_from([None, "application/graphql-response+json", "application/json"])


# Examples per mode; valid operations reach the database, so they cost more per case.
EXAMPLES = {Mode.POSITIVE: 200, Mode.NEGATIVE: 400}


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "one-violation"])
@pytest.mark.parametrize("generate", [queries, mutations], ids=["queries", "mutations"])
def test_generated_operations_are_answered_cleanly(
    hostile_server: HostileServer, http: httpx.Client, generate: Any, mode: Mode
) -> None:
    """Every query field, and the watchlist, onboarding, settings, alert and webhook
    mutations, with random arguments; no token, a valid one or garbage."""
    strategy = generate(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=mode)

    with Tally(f"{generate.__name__} {mode.name}") as tally:

        @fuzz_settings(EXAMPLES[mode])
        @given(query=strategy, token=token_choice(hostile_server), accept=ACCEPTS)
        def check(query: str, token: str | None, accept: str | None) -> None:
            tally.check(post(http, query, token=token, accept=accept))

        check()
    assert tally.executed > 0 or mode is Mode.NEGATIVE


def _selection(field: graphql.GraphQLField) -> str:
    """The smallest selection the field's type needs."""
    named = graphql.get_named_type(field.type)
    return " { __typename }" if graphql.is_composite_type(named) else ""


def operation_with_variables(operation: str, name: str, field: graphql.GraphQLField) -> str:
    """`operation($a: T, …) { name(a: $a, …) … }` declaring each argument as a variable."""
    declared = ", ".join(f"${arg}: {spec.type}" for arg, spec in field.args.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in field.args)
    return f"{operation}({declared}) {{ {name}({passed}){_selection(field)} }}"


def _fields_with_arguments() -> list[tuple[str, str, graphql.GraphQLField]]:
    roots = [("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)]
    return [
        (operation, name, field)
        for operation, root in roots
        if root is not None
        for name, field in root.fields.items()
        if field.args
    ]


FIELDS_WITH_ARGUMENTS = _fields_with_arguments()


TEXT = st.one_of(
    st.text(),
    st.sampled_from(["AAPL", "ko", " brk.b ", "FZ1", "MSFT", "", " ", "a" * 101, "0" * 1000]),
    st.uuids().map(str),
    st.just("http://127.0.0.1:9/hook"),
)
SCALAR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "String": TEXT,
    "ID": TEXT,
    "Int": st.integers(min_value=-5, max_value=120) | st.integers(),
    "Float": st.floats(allow_nan=False, allow_infinity=False),
    "Boolean": st.booleans(),
    "Date": DATE_TEXT,
    "DateTime": DATETIME_TEXT,
}


def typed_value(type_: graphql.GraphQLInputType) -> st.SearchStrategy[Any]:
    """Mostly a value of the argument's type (so resolvers run), sometimes anything at all."""
    nullable = not isinstance(type_, graphql.GraphQLNonNull)
    inner = graphql.get_nullable_type(type_)
    if isinstance(inner, graphql.GraphQLList):
        typed: st.SearchStrategy[Any] = st.lists(typed_value(inner.of_type), max_size=60)
    elif isinstance(inner, graphql.GraphQLEnumType):
        typed = st.sampled_from(list(inner.values))
    elif isinstance(inner, graphql.GraphQLInputObjectType):
        fields = {name: typed_value(field.type) for name, field in inner.fields.items()}
        typed = st.fixed_dictionaries({}, optional=fields)
    else:
        typed = SCALAR_VALUES.get(inner.name, JSON_VALUES)
    if nullable:
        typed = typed | st.none()
    return st.one_of(typed, typed, typed, JSON_VALUES)


@st.composite
def operations_with_random_variables(draw: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """A root field with each argument passed as a variable: absent, typed or any JSON."""
    operation, name, field = draw(st.sampled_from(FIELDS_WITH_ARGUMENTS))
    optional = {arg: typed_value(spec.type) for arg, spec in field.args.items()}
    variables = draw(st.fixed_dictionaries({}, optional=optional))
    return operation_with_variables(operation, name, field), variables


def test_random_variables_for_every_argument_are_answered_cleanly(
    hostile_server: HostileServer, http: httpx.Client
) -> None:
    with Tally("random variables") as tally:

        @fuzz_settings(600)
        @given(case=operations_with_random_variables(), token=token_choice(hostile_server))
        def check(case: tuple[str, dict[str, Any]], token: str | None) -> None:
            query, variables = case
            tally.check(post(http, query, variables, token=token))

        check()
    assert tally.executed > 0


def test_random_request_bodies_are_answered_cleanly(
    hostile_server: HostileServer, http: httpx.Client
) -> None:
    """Whole bodies of random JSON, and queries with random variables, operationName and
    extensions (persisted-query hashes among them)."""
    persisted = st.fixed_dictionaries(
        {"version": st.sampled_from([1, 2]) | JSON_VALUES},
        optional={"sha256Hash": st.text() | st.just("0" * 64)},
    )
    fields = st.fixed_dictionaries(
        {},
        optional={
            "query": queries(SCHEMA, custom_scalars=CUSTOM_SCALARS) | JSON_VALUES,
            "variables": JSON_VALUES,
            "operationName": st.none() | st.text(max_size=10) | JSON_VALUES,
            "extensions": JSON_VALUES | st.fixed_dictionaries({"persistedQuery": persisted}),
        },
    )

    with Tally("random bodies") as tally:

        @fuzz_settings(600)
        @given(body=fields | JSON_VALUES, token=token_choice(hostile_server), accept=ACCEPTS)
        def check(body: Any, token: str | None, accept: str | None) -> None:
            headers = {"content-type": "application/json"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            if accept:
                headers["accept"] = accept
            tally.check(http.post("/graphql", content=json.dumps(body).encode(), headers=headers))

        check()


@st.composite
def costly_documents(draw: Callable[..., Any]) -> str:
    """Aliased lists of lists of price windows: costs from a few to millions."""
    dates = st.dates(min_value=date(1995, 1, 1), max_value=date(2030, 12, 31))
    parts = []
    for index in range(draw(st.integers(1, 6))):
        start, end = sorted((draw(dates), draw(dates)))
        prices = f'prices(from: "{start}", to: "{end}") {{ date close }}'
        inner = draw(
            st.sampled_from(
                [
                    prices,
                    f"myAlerts(first: {draw(st.integers(0, 120))}) {{ id stock {{ {prices} }} }}",
                    "ticker",
                ]
            )
        )
        parts.append(
            f'a{index}: searchStocks(query: "a", limit: {draw(st.integers(-5, 60))}) {{ {inner} }}'
        )
    return "{ " + " ".join(parts) + " }"


def test_costly_documents_are_refused_exactly_when_over_the_limit(
    hostile_server: HostileServer, http: httpx.Client
) -> None:
    """The server's reported cost is the static model's, and QUERY_TOO_COSTLY comes exactly
    when it is over the limit (never a 5xx, never executed)."""
    limits = QueryLimits(Settings())
    build_schema(Settings(), limits)
    refused = 0

    with Tally("costly documents") as tally:

        @fuzz_settings(150)
        @given(query=costly_documents(), token=token_choice(hostile_server))
        def check(query: str, token: str | None) -> None:
            nonlocal refused
            response = post(http, query, token=token)
            tally.check(response)
            body = response.json()
            if response.status_code == 429:
                return
            expected = limits.cost(graphql.parse(query), None, {})
            assert body["extensions"]["cost"] == expected, body
            codes = [e["extensions"]["code"] for e in body.get("errors") or []]
            assert ("QUERY_TOO_COSTLY" in codes) == (expected > DEFAULT_MAX_COST), body
            refused += "QUERY_TOO_COSTLY" in codes

        check()
    assert refused > 0 and tally.executed > 0


def test_generated_queries_over_get_are_answered_cleanly(
    hostile_server: HostileServer, http: httpx.Client
) -> None:
    strategy = queries(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=Mode.NEGATIVE) | queries(
        SCHEMA, custom_scalars=CUSTOM_SCALARS
    )

    with Tally("GET queries") as tally:

        @fuzz_settings(300)
        @given(query=strategy, variables=JSON_VALUES, token=token_choice(hostile_server))
        def check(query: str, variables: Any, token: str | None) -> None:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            params = {"query": query, "variables": json.dumps(variables)}
            tally.check(http.get("/graphql", params=params, headers=headers))

        check()


class SocketSession:
    """One acknowledged graphql-transport-ws connection, reopened after the server closes it."""

    def __init__(self, server: HostileServer) -> None:
        self.server = server
        self.ws: ClientConnection | None = None
        self.next_id = 0
        self.cases = 0
        self.connections = ExitStack()

    def socket(self) -> ClientConnection:
        if self.ws is None:
            self.ws = self.connections.enter_context(
                connect(
                    self.server.ws_url,
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    open_timeout=10,
                    # Keepalive pings draw from `random`, which Hypothesis forbids mid-example.
                    ping_interval=None,
                )
            )
            payload = {"Authorization": f"Bearer {self.server.token}"}
            self.ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert assert_clean_message(self.ws.recv(10))["type"] == "connection_ack"
        return self.ws

    def run(self, query: str, variables: Any) -> None:
        """Subscribe, then read until this operation's error or complete (or a 4400 close)."""
        self.cases += 1
        ws = self.socket()
        self.next_id += 1
        op_id = str(self.next_id)
        payload = {"query": query, "variables": variables}
        ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        try:
            while True:
                message = assert_clean_message(ws.recv(20))
                if message.get("id") == op_id and message["type"] in ("error", "complete"):
                    return
        except ConnectionClosed as closed:
            # graphql-transport-ws answers a syntax error by closing with 4400.
            assert closed.rcvd is not None and closed.rcvd.code == 4400, (closed, query)
            self.ws = None

    def close(self) -> None:
        self.connections.close()


def test_generated_operations_over_the_websocket_are_answered_cleanly(
    hostile_server: HostileServer,
) -> None:
    strategy = st.one_of(
        queries(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=Mode.NEGATIVE),
        queries(SCHEMA, custom_scalars=CUSTOM_SCALARS),
        mutations(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=Mode.NEGATIVE),
    )
    variables = st.none() | JSON_VALUES.filter(lambda value: isinstance(value, dict))
    session = SocketSession(hostile_server)

    @fuzz_settings(300)
    @given(query=strategy, variables=variables)
    def check(query: str, variables: Any) -> None:
        session.run(query, variables)

    try:
        check()
    finally:
        session.close()
        print(f"\nWebSocket operations: {session.cases} generated cases")
