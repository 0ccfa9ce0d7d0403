"""The app serves GraphQL over real HTTP on a per-test database."""

from __future__ import annotations

from tests.fixtures.app import GraphQLClient


async def test_health_query_answers_without_token(gql: GraphQLClient) -> None:
    body = await gql("{ health { ok pendingBackfills } }")
    assert body["data"]["health"] == {"ok": True, "pendingBackfills": 0}
