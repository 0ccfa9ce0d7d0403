"""Webhooks, deliveries and the email digest over GraphQL; another user's rows are NOT_FOUND."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette

from services.delivery import email as digest_email
from services.delivery.channels.email import email_link_secret
from services.settings import Settings
from tests.fixtures.api import Viewer
from tests.fixtures.app import GraphQLClient, error_codes
from tests.fixtures.delivery import DeliveryWorld, deliver_once, outbox_files
from tests.fixtures.webhook_receiver import Receiver, Reply
from web.app import create_app

ENDPOINT_FIELDS = """id url description enabled disabledReason createdAt lastSuccessAt
    lastFailureAt consecutiveFailures"""
CREATE = f"""mutation($url: String!, $description: String) {{
  createWebhook(url: $url, description: $description) {{
    secret endpoint {{ {ENDPOINT_FIELDS} }} }} }}"""
DELIVERIES = """query($first: Int, $after: String, $status: DeliveryStatus,
                       $channel: DeliveryChannel) {
  deliveries(first: $first, after: $after, status: $status, channel: $channel) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id channel status attempts nextAttemptAt lastStatusCode lastError
                          createdAt deliveredAt alert { id headline stock { ticker } }
                          webhook { id url } } } } }"""


async def signed_up(gql: GraphQLClient, new_viewer: Callable[..., Viewer], **kw: Any) -> Viewer:
    viewer: Viewer = new_viewer(**kw)
    assert "errors" not in await gql("{ me { id } }", token=viewer.token)
    return viewer


async def create(gql: GraphQLClient, token: str, url: str, **kw: Any) -> dict[str, Any]:
    body = await gql(CREATE, {"url": url, **kw}, token=token)
    assert "errors" not in body, body
    created: dict[str, Any] = body["data"]["createWebhook"]
    return created


async def test_create_list_rotate_and_delete_a_webhook(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], receiver: Receiver
) -> None:
    viewer = await signed_up(gql, new_viewer)
    created = await create(gql, viewer.token, receiver.url(), description="  my receiver ")
    endpoint = created["endpoint"]
    assert created["secret"].startswith("whsec_")
    assert endpoint["url"] == receiver.url() and endpoint["description"] == "my receiver"
    assert endpoint["enabled"] and endpoint["consecutiveFailures"] == 0

    listed = await gql(
        "{ webhooks { id url } me { webhooks { id } emailDigest } }", token=viewer.token
    )
    assert listed["data"]["webhooks"] == [{"id": endpoint["id"], "url": receiver.url()}]
    assert listed["data"]["me"] == {"webhooks": [{"id": endpoint["id"]}], "emailDigest": "DAILY"}

    rotated = await gql(
        "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }",
        {"id": endpoint["id"]},
        token=viewer.token,
    )
    new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]
    assert new_secret != created["secret"]
    tested = await gql(
        "mutation($id: ID!) { testWebhook(id: $id) { status attempts lastStatusCode alert { id }"
        " webhook { id } channel } }",
        {"id": endpoint["id"]},
        token=viewer.token,
    )
    assert tested["data"]["testWebhook"] == {
        "status": "DELIVERED",
        "attempts": 1,
        "lastStatusCode": 200,
        "alert": None,
        "webhook": {"id": endpoint["id"]},
        "channel": "WEBHOOK",
    }
    (request,) = receiver.requests
    Webhook(new_secret).verify(request.body, request.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(created["secret"]).verify(request.body, request.headers)

    deleted = await gql(
        "mutation($id: ID!) { deleteWebhook(id: $id) }", {"id": endpoint["id"]}, token=viewer.token
    )
    assert deleted["data"]["deleteWebhook"] is True
    assert (await gql("{ webhooks { id } }", token=viewer.token))["data"]["webhooks"] == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "url"),
        ("ftp://example.com/hook", "http"),
        ("http://user:secret@example.com/hook", "password"),
        ("https://" + "a" * 2050 + ".com/", "2048"),
        ("not a url", "url"),
    ],
)
async def test_bad_webhook_urls_are_bad_user_input(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], url: str, message: str
) -> None:
    viewer = await signed_up(gql, new_viewer)
    body = await gql(CREATE, {"url": url}, token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert message.lower() in body["errors"][0]["message"].lower()


async def test_a_sixth_endpoint_is_refused(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], receiver: Receiver
) -> None:
    viewer = await signed_up(gql, new_viewer)
    for i in range(5):
        await create(gql, viewer.token, receiver.url(f"/hook{i}"))
    body = await gql(CREATE, {"url": receiver.url("/six")}, token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and "at most 5" in body["errors"][0]["message"]


@pytest.fixture
async def strict_client(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app as production refuses private webhook addresses (WEBHOOK_ALLOW_PRIVATE off)."""
    strict = dataclasses.replace(settings, webhook_allow_private=False)
    application: Starlette = create_app(strict, database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
    ],
)
async def test_private_or_plain_http_urls_are_refused_in_production(
    strict_client: httpx.AsyncClient, new_viewer: Callable[..., Viewer], url: str
) -> None:
    gql = GraphQLClient(strict_client)
    viewer = await signed_up(gql, new_viewer)
    body = await gql(CREATE, {"url": url}, token=viewer.token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_create_webhook_never_says_how_an_internal_name_resolves(
    strict_client: httpx.AsyncClient,
    new_viewer: Callable[..., Viewer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A user probing names inside the network learns neither the address nor whether it exists.
    loop = asyncio.get_running_loop()
    answers = {"db.internal.example": "10.1.2.3", "admin.internal.example": "127.0.0.1"}

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    gql = GraphQLClient(strict_client)
    viewer = await signed_up(gql, new_viewer)
    messages = []
    for name in (*answers, "nothing.internal.example"):
        body = await gql(CREATE, {"url": f"https://{name}/hook"}, token=viewer.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], body
        messages.append(body["errors"][0]["message"].replace(name, "NAME"))
    assert len(set(messages)) == 1, messages  # one answer for private and unknown names alike
    assert not any(address in "".join(messages) for address in answers.values()), messages


async def test_another_users_endpoints_and_deliveries_are_not_found_everywhere(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    receiver: Receiver,
    world: DeliveryWorld,
    pool: asyncpg.Pool,
) -> None:
    owner = await signed_up(gql, new_viewer)
    other = await signed_up(gql, new_viewer)
    endpoint = (await create(gql, owner.token, receiver.url()))["endpoint"]
    await world.alert(owner.id)
    delivery_id = str(await pool.fetchval("SELECT id FROM deliveries"))
    await pool.execute("UPDATE deliveries SET status = 'failed'")
    for mutation in (
        "mutation($id: ID!) { deleteWebhook(id: $id) }",
        "mutation($id: ID!) { setWebhookEnabled(id: $id, enabled: false) { id } }",
        "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
        "mutation($id: ID!) { testWebhook(id: $id) { id } }",
    ):
        for raw in (endpoint["id"], "not-an-id"):
            body = await gql(mutation, {"id": raw}, token=other.token)
            assert error_codes(body) == ["NOT_FOUND"], (mutation, body)
    for raw in (delivery_id, "not-an-id"):
        body = await gql(
            "mutation($id: ID!) { redeliver(id: $id) { id } }", {"id": raw}, token=other.token
        )
        assert error_codes(body) == ["NOT_FOUND"]
    seen = await gql("{ webhooks { id } deliveries { edges { node { id } } } }", token=other.token)
    assert seen["data"] == {"webhooks": [], "deliveries": {"edges": []}}
    # Nothing of the owner's changed.
    assert receiver.requests == []
    assert (await world.endpoint_state(endpoint["id"]))["enabled"]
    for query in ("{ webhooks { id } }", "{ deliveries { edges { node { id } } } }"):
        assert error_codes(await gql(query)) == ["UNAUTHENTICATED"]


async def test_deliveries_page_filter_and_redeliver(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    receiver: Receiver,
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    settings: Settings,
    database_url: str,
) -> None:
    viewer = await signed_up(gql, new_viewer, email="ann@example.com")
    await gql(
        "mutation { updateSettings(input: {emailDigest: IMMEDIATE}) { emailDigest } }",
        token=viewer.token,
    )
    endpoint = (await create(gql, viewer.token, receiver.url()))["endpoint"]
    for ticker in ("AAA", "BBB", "CCC"):
        await world.alert(viewer.id, ticker)
    receiver.script(Reply(status=500), Reply(status=200), Reply(status=200))
    strict = dataclasses.replace(settings, webhook_retry_schedule=(1,))
    await deliver_once(pool, strict, database_url)

    pages: list[dict[str, Any]] = []
    after = None
    while True:
        body = await gql(DELIVERIES, {"first": 2, "after": after}, token=viewer.token)
        connection = body["data"]["deliveries"]
        pages.append(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    nodes = [e["node"] for page in pages for e in page["edges"]]
    assert len(nodes) == 6 and len({n["id"] for n in nodes}) == 6
    assert sorted(n["channel"] for n in nodes) == ["EMAIL"] * 3 + ["WEBHOOK"] * 3
    assert {n["alert"]["stock"]["ticker"] for n in nodes} == {"AAA", "BBB", "CCC"}
    assert all(
        n["webhook"] == {"id": endpoint["id"], "url": receiver.url()}
        for n in nodes
        if n["channel"] == "WEBHOOK"
    )
    (retrying,) = [n for n in nodes if n["status"] == "PENDING"]
    assert retrying["lastStatusCode"] == 500 and retrying["nextAttemptAt"] is not None

    emails = await gql(DELIVERIES, {"channel": "EMAIL", "status": "DELIVERED"}, token=viewer.token)
    assert len(emails["data"]["deliveries"]["edges"]) == 3
    (eml,) = outbox_files(settings)
    assert "AAA" in eml.read_text() and "CCC" in eml.read_text()

    not_failed = await gql(
        "mutation($id: ID!) { redeliver(id: $id) { id } }",
        {"id": retrying["id"]},
        token=viewer.token,
    )
    assert error_codes(not_failed) == ["BAD_USER_INPUT"]
    receiver.script(Reply(status=500))
    await world.make_due()
    await deliver_once(pool, strict, database_url)  # the last retry fails: FAILED
    again = await gql(
        "mutation($id: ID!) { redeliver(id: $id) { status nextAttemptAt } }",
        {"id": retrying["id"]},
        token=viewer.token,
    )
    assert again["data"]["redeliver"]["status"] == "PENDING"
    await deliver_once(pool, strict, database_url)
    final = await gql(DELIVERIES, {"status": "DELIVERED", "channel": "WEBHOOK"}, token=viewer.token)
    assert len(final["data"]["deliveries"]["edges"]) == 3

    bad = await gql(DELIVERIES, {"after": "garbage"}, token=viewer.token)
    assert error_codes(bad) == ["BAD_USER_INPUT"]
    too_many = await gql(DELIVERIES, {"first": 101}, token=viewer.token)
    assert error_codes(too_many) == ["BAD_USER_INPUT"]


async def test_set_webhook_enabled_and_email_digest_settings(
    gql: GraphQLClient, new_viewer: Callable[..., Viewer], receiver: Receiver
) -> None:
    viewer = await signed_up(gql, new_viewer)
    endpoint = (await create(gql, viewer.token, receiver.url()))["endpoint"]
    off = await gql(
        "mutation($id: ID!) { setWebhookEnabled(id: $id, enabled: false) "
        "{ enabled disabledReason } }",
        {"id": endpoint["id"]},
        token=viewer.token,
    )
    assert off["data"]["setWebhookEnabled"] == {
        "enabled": False,
        "disabledReason": "disabled by the user",
    }
    refused = await gql(
        "mutation($id: ID!) { testWebhook(id: $id) { id } }",
        {"id": endpoint["id"]},
        token=viewer.token,
    )
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    for digest in ("WEEKLY", "OFF", "IMMEDIATE"):
        body = await gql(
            "mutation($d: EmailDigest) { updateSettings(input: {emailDigest: $d}) "
            "{ emailDigest } }",
            {"d": digest},
            token=viewer.token,
        )
        assert body["data"]["updateSettings"]["emailDigest"] == digest
    bad = await gql(
        "mutation { updateSettings(input: {emailDigest: HOURLY}) { emailDigest } }",
        token=viewer.token,
    )
    assert error_codes(bad) == ["BAD_USER_INPUT"]


async def test_one_click_unsubscribe(
    client: httpx.AsyncClient,
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    settings: Settings,
    database_url: str,
) -> None:
    viewer = await signed_up(gql, new_viewer, email="ann@example.com")
    await gql(
        "mutation { updateSettings(input: {emailDigest: IMMEDIATE}) { emailDigest } }",
        token=viewer.token,
    )
    await world.alert(viewer.id)
    await deliver_once(pool, settings, database_url)
    (eml,) = outbox_files(settings)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    link = message["List-Unsubscribe"].strip("<>")
    path = link.removeprefix(settings.public_base_url)

    page = await client.get(path)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200 and "<form" in page.text
    me = await gql("{ me { emailDigest } }", token=viewer.token)
    assert me["data"]["me"]["emailDigest"] == "IMMEDIATE"

    done = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    me = await gql("{ me { emailDigest } }", token=viewer.token)
    assert me["data"]["me"]["emailDigest"] == "OFF"
    await world.alert(viewer.id, "ZZZ")
    assert [d["channel"] for d in await world.deliveries(viewer.id)] == ["email"]

    secret = email_link_secret(settings)
    assert secret is not None
    forged = digest_email.unsubscribe_token(viewer.id, b"another secret")
    for token in (forged, "garbage", ""):
        refused = await client.post(f"/unsubscribe?token={token}")
        assert refused.status_code == 400 and "not valid" in refused.text

    # A link older than UNSUBSCRIBE_TOKEN_DAYS (365) no longer works, even a genuine one.
    await gql(
        "mutation { updateSettings(input: {emailDigest: DAILY}) { emailDigest } }",
        token=viewer.token,
    )
    old = digest_email.unsubscribe_token(
        viewer.id, secret, issued_at=datetime.now(UTC) - timedelta(days=366)
    )
    expired = await client.post(f"/unsubscribe?token={old}")
    assert expired.status_code == 400 and "expired" in expired.text
    me = await gql("{ me { emailDigest } }", token=viewer.token)
    assert me["data"]["me"]["emailDigest"] == "DAILY"


async def test_retention_deleting_deliveries_keeps_the_listing_and_redeliver_sound(
    gql: GraphQLClient,
    new_viewer: Callable[..., Viewer],
    world: DeliveryWorld,
    pool: asyncpg.Pool,
    settings: Settings,
    database_url: str,
) -> None:
    viewer = await signed_up(gql, new_viewer, email="ann@example.com")
    for ticker in ("AAA", "BBB", "CCC", "DDD"):
        await world.alert(viewer.id, ticker)
    await pool.execute(
        "UPDATE deliveries SET status = 'failed', updated_at = now() - interval '31 days'"
    )
    # AAA's delivery failed recently: retention keeps it.
    await pool.execute(
        "UPDATE deliveries d SET updated_at = now() FROM alert_history a, entities e "
        "WHERE a.id = d.alert_id AND e.id = a.entity_id AND e.ticker = 'AAA'"
    )
    first = (await gql(DELIVERIES, {"first": 2}, token=viewer.token))["data"]["deliveries"]
    assert [e["node"]["alert"]["stock"]["ticker"] for e in first["edges"]] == ["DDD", "CCC"]
    await deliver_once(pool, settings, database_url)  # retention deletes BBB, CCC, DDD

    # The next page after a deleted row's cursor continues from where that row was.
    rest = await gql(DELIVERIES, {"after": first["pageInfo"]["endCursor"]}, token=viewer.token)
    (kept,) = rest["data"]["deliveries"]["edges"]
    assert kept["node"]["alert"]["stock"]["ticker"] == "AAA"
    assert not rest["data"]["deliveries"]["pageInfo"]["hasNextPage"]
    for edge in first["edges"]:
        gone = await gql(
            "mutation($id: ID!) { redeliver(id: $id) { id } }",
            {"id": edge["node"]["id"]},
            token=viewer.token,
        )
        assert error_codes(gone) == ["NOT_FOUND"]
    again = await gql(
        "mutation($id: ID!) { redeliver(id: $id) { status } }",
        {"id": kept["node"]["id"]},
        token=viewer.token,
    )
    assert again["data"]["redeliver"]["status"] == "PENDING"
