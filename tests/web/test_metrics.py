"""GET /metrics: Prometheus text with operations, latency, errors by code, subscribers, pool."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.fixtures.app import GraphQLClient
from web.operation_guards import MAX_REQUEST_BYTES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_operations_latency_and_errors_are_counted(
    client: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    before = await scrape(client)
    assert (await gql("{ health { ok } }"))["data"]["health"]["ok"] is True
    assert (await gql("{ health { nope } }"))["errors"]
    assert (await gql("{ watchlist { count } }"))["errors"]  # no token
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mc_graphql_operations_total", operation_type="query", status="ok") == 1
    assert delta("mc_graphql_operations_total", operation_type="query", status="error") == 2
    assert delta("mc_graphql_errors_total", code="BAD_USER_INPUT") == 1
    assert delta("mc_graphql_errors_total", code="UNAUTHENTICATED") == 1
    assert delta("mc_graphql_operation_duration_seconds_count", operation_type="query") == 3
    assert (
        delta("mc_graphql_operation_duration_seconds_bucket", operation_type="query", le="+Inf")
        == 3
    )
    assert delta("mc_http_requests_total", route="/graphql", method="POST", status="200") == 3


async def test_refused_documents_are_counted_as_unknown_operations(
    client: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    before = await scrape(client)
    await gql("{ health { ok ")  # syntax error: no operation type
    after = await scrape(client)
    key = (
        "mc_graphql_operations_total",
        frozenset({("operation_type", "unknown"), ("status", "error")}),
    )
    assert after[key] - before.get(key, 0.0) == 1


async def test_subscriber_gauge_follows_the_alert_hub(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    hub = app.state.alert_hub
    assert value(await scrape(client), "mc_graphql_active_subscribers") == 0
    with hub.subscribe(uuid.uuid4()), hub.subscribe(uuid.uuid4()):
        assert value(await scrape(client), "mc_graphql_active_subscribers") == 2
    assert value(await scrape(client), "mc_graphql_active_subscribers") == 0


async def test_pool_size_is_exposed(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    assert value(samples, "mc_db_pool_connections", state="max") == 10
    assert value(samples, "mc_db_pool_connections", state="size") >= 1
    assert value(samples, "mc_db_pool_connections", state="idle") <= value(
        samples, "mc_db_pool_connections", state="size"
    )


async def test_metrics_are_plain_text_prometheus(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for name in (
        "mc_graphql_operations_total",
        "mc_graphql_operation_duration_seconds_bucket",
        "mc_graphql_errors_total",
        "mc_graphql_active_subscribers",
        "mc_websocket_connections",
        "mc_db_pool_connections",
        "mc_http_requests_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, name


async def test_requests_refused_by_the_body_cap_are_counted_with_their_status(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    response = await client.post(
        "/graphql",
        content=b" " * (MAX_REQUEST_BYTES + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    await client.get("/nowhere")
    after = await scrape(client)
    labels = {"route": "/graphql", "method": "POST", "status": "413"}
    assert (
        value(after, "mc_http_requests_total", **labels)
        - value(before, "mc_http_requests_total", **labels)
        == 1
    )
    other = {"route": "other", "method": "GET", "status": "404"}
    assert (
        value(after, "mc_http_requests_total", **other)
        - value(before, "mc_http_requests_total", **other)
        == 1
    )
