"""Web Push subscriptions over GraphQL: the public key, register, list, delete, the limit."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette

from services.delivery.channels import push
from services.delivery.registry import DeliveryChannel
from services.settings import Settings
from tests.fakes.push_service import FakePushService, FakeSubscription, b64url_decode
from tests.fixtures.api import Viewer
from tests.fixtures.app import GraphQLClient, error_codes
from tests.fixtures.delivery import DeliveryWorld, deliver_once
from web.app import create_app

REGISTER = """mutation($endpoint: String!, $p256dh: String!, $auth: String!, $ua: String) {
  registerPushSubscription(endpoint: $endpoint, p256dh: $p256dh, auth: $auth, userAgent: $ua) {
    id endpoint userAgent createdAt } }"""
DELETE = "mutation($id: ID!) { deletePushSubscription(id: $id) }"


async def signed_up(gql: GraphQLClient, new_viewer: Callable[..., Viewer]) -> Viewer:
    viewer: Viewer = new_viewer()
    assert "errors" not in await gql("{ me { id } }", token=viewer.token)
    return viewer


def variables(subscription: FakeSubscription, **overrides: Any) -> dict[str, Any]:
    return {
        "endpoint": subscription.endpoint,
        "p256dh": subscription.p256dh,
        "auth": subscription.auth,
        "ua": "Mozilla/5.0 (test)",
        **overrides,
    }


async def register(gql: GraphQLClient, token: str, subscription: FakeSubscription) -> str:
    body = await gql(REGISTER, variables(subscription), token=token)
    assert "errors" not in body, body
    subscription_id: str = body["data"]["registerPushSubscription"]["id"]
    return subscription_id


async def test_the_public_key_is_the_uncompressed_point_of_the_kept_development_key(
    gql: GraphQLClient, settings: Settings
) -> None:
    body = await gql("{ pushPublicKey }")
    key = body["data"]["pushPublicKey"]
    point = b64url_decode(key)
    assert len(point) == 65 and point[0] == 4 and "=" not in key
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)  # on the curve
    # Generated once in DATA_DIR (mode 0600) and kept: a restart keeps browsers' subscriptions.
    kept = settings.data_dir / push.VAPID_KEY_FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    assert push.application_server_key(settings) == key
    private = int.from_bytes(b64url_decode(kept.read_text().strip()), "big")
    derived = ec.derive_private_key(private, ec.SECP256R1()).public_key()
    assert (
        derived.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        == point
    )


async def test_register_list_refresh_and_delete(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], push_service: FakePushService
) -> None:
    viewer = await signed_up(gql, new_viewer)
    browser = push_service.subscribe()
    body = await gql(REGISTER, variables(browser), token=viewer.token)
    created = body["data"]["registerPushSubscription"]
    assert created["endpoint"] == browser.endpoint
    assert created["userAgent"] == "Mozilla/5.0 (test)"

    # The same browser again (every page load re-registers) updates the one row.
    again = await gql(REGISTER, variables(browser, ua="Firefox"), token=viewer.token)
    assert again["data"]["registerPushSubscription"]["id"] == created["id"]
    listed = await gql("{ me { pushSubscriptions { id endpoint userAgent } } }", token=viewer.token)
    assert listed["data"]["me"]["pushSubscriptions"] == [
        {"id": created["id"], "endpoint": browser.endpoint, "userAgent": "Firefox"}
    ]

    assert (await gql(DELETE, {"id": created["id"]}, token=viewer.token))["data"] == {
        "deletePushSubscription": True
    }
    listed = await gql("{ me { pushSubscriptions { id } } }", token=viewer.token)
    assert listed["data"]["me"]["pushSubscriptions"] == []
    assert error_codes(await gql(DELETE, {"id": created["id"]}, token=viewer.token)) == [
        "NOT_FOUND"
    ]


async def test_another_users_subscription_is_not_found(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], push_service: FakePushService
) -> None:
    owner = await signed_up(gql, new_viewer)
    other = await signed_up(gql, new_viewer)
    subscription_id = await register(gql, owner.token, push_service.subscribe())
    for raw in (subscription_id, "not-an-id"):
        assert error_codes(await gql(DELETE, {"id": raw}, token=other.token)) == ["NOT_FOUND"]
    seen = await gql("{ me { pushSubscriptions { id } } }", token=other.token)
    assert seen["data"]["me"]["pushSubscriptions"] == []
    assert error_codes(await gql(REGISTER, variables(push_service.subscribe()))) == [
        "UNAUTHENTICATED"
    ]


async def test_a_browser_that_signs_in_as_another_user_moves_to_that_user(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], push_service: FakePushService
) -> None:
    first = await signed_up(gql, new_viewer)
    second = await signed_up(gql, new_viewer)
    browser = push_service.subscribe()
    await register(gql, first.token, browser)
    query = "{ me { pushSubscriptions { endpoint } } }"
    # Cached for the first user now; the move must invalidate it.
    assert (await gql(query, token=first.token))["data"]["me"]["pushSubscriptions"] == [
        {"endpoint": browser.endpoint}
    ]
    await register(gql, second.token, browser)
    assert (await gql(query, token=first.token))["data"]["me"]["pushSubscriptions"] == []
    assert (await gql(query, token=second.token))["data"]["me"]["pushSubscriptions"] == [
        {"endpoint": browser.endpoint}
    ]


async def test_an_eleventh_subscription_is_refused(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], push_service: FakePushService
) -> None:
    viewer = await signed_up(gql, new_viewer)
    for _ in range(10):
        await register(gql, viewer.token, push_service.subscribe())
    body = await gql(REGISTER, variables(push_service.subscribe()), token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and "at most 10" in body["errors"][0]["message"]


async def test_concurrent_registrations_stop_at_ten_without_a_lock(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    push_service: FakePushService,
    pool: asyncpg.Pool,
) -> None:
    viewer = await signed_up(gql, new_viewer)
    bodies = await asyncio.gather(
        *(gql(REGISTER, variables(push_service.subscribe()), token=viewer.token) for _ in range(16))
    )
    assert sum("errors" not in body for body in bodies) == 10
    assert all(error_codes(b) == ["BAD_USER_INPUT"] for b in bodies if "errors" in b)
    assert await pool.fetchval("SELECT count(*) FROM push_subscriptions") == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("p256dh", "not base64 !"),
        ("p256dh", base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode()),  # off the curve
        ("p256dh", base64.urlsafe_b64encode(b"\x04" * 33).decode()),  # compressed length
        ("auth", base64.urlsafe_b64encode(b"x" * 8).decode()),
        ("endpoint", "ftp://push.example.com/x"),
        ("endpoint", ""),
    ],
)
async def test_bad_keys_or_endpoints_are_bad_user_input(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    push_service: FakePushService,
    field: str,
    value: str,
) -> None:
    viewer = await signed_up(gql, new_viewer)
    body = await gql(
        REGISTER, variables(push_service.subscribe(), **{field: value}), token=viewer.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"], body


@pytest.fixture
async def production_client(
    settings: Settings, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as production runs it: private addresses refused, its own VAPID key."""
    strict = dataclasses.replace(
        settings,
        webhook_allow_private=False,
        app_env="production",
        vapid_private_key=push.new_private_key(),
        vapid_subject="mailto:ops@example.com",
    )
    application: Starlette = create_app(strict, database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://push.example.com/send/abc",  # not https
        "https://127.0.0.1/push/abc",
        "https://localhost/push/abc",
        "https://10.0.0.7/push/abc",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/push/abc",
    ],
)
async def test_plain_http_or_private_endpoints_are_refused_in_production(
    production_client: httpx.AsyncClient,
    new_viewer: Callable[..., Viewer],
    push_service: FakePushService,
    endpoint: str,
) -> None:
    gql = GraphQLClient(production_client)
    viewer = await signed_up(gql, new_viewer)
    body = await gql(
        REGISTER, variables(push_service.subscribe(), endpoint=endpoint), token=viewer.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "push endpoint" in body["errors"][0]["message"]


async def test_production_without_vapid_keys_says_push_is_not_configured(
    settings: Settings,
    database_url: str,
    new_viewer: Callable[..., Viewer],
    push_service: FakePushService,
) -> None:
    production = dataclasses.replace(settings, app_env="production", vapid_private_key=None)
    application: Starlette = create_app(production, database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            gql = GraphQLClient(http)
            viewer = await signed_up(gql, new_viewer)
            assert error_codes(await gql("{ pushPublicKey }")) == ["PUSH_NOT_CONFIGURED"]
            body = await gql(REGISTER, variables(push_service.subscribe()), token=viewer.token)
            assert error_codes(body) == ["PUSH_NOT_CONFIGURED"]


async def test_push_deliveries_are_listed_with_their_subscription(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    push_service: FakePushService,
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    database_url: str,
    settings: Settings,
) -> None:
    viewer = await signed_up(gql, new_viewer)
    browser = push_service.subscribe()
    subscription_id = await register(gql, viewer.token, browser)
    alert_id = await world.alert(viewer.id, channels={DeliveryChannel.PUSH})
    assert (await deliver_once(pool, settings, database_url)).delivered == 1
    assert push_service.accepted()[0].data["alertId"] == str(alert_id)
    body = await gql(
        "{ deliveries(channel: PUSH) { edges { node { channel status lastStatusCode"
        " alert { id } webhook { id } pushSubscription { id endpoint } } } } }",
        token=viewer.token,
    )
    assert [edge["node"] for edge in body["data"]["deliveries"]["edges"]] == [
        {
            "channel": "PUSH",
            "status": "DELIVERED",
            "lastStatusCode": 201,
            "alert": {"id": str(alert_id)},
            "webhook": None,
            "pushSubscription": {"id": subscription_id, "endpoint": browser.endpoint},
        }
    ]
