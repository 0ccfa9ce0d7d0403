"""`alertCreated` over real WebSockets against real uvicorn server processes and Postgres."""

from __future__ import annotations

import asyncio
import secrets
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ingest.evaluation.run import run_evaluation
from services.db import database_name
from services.settings import Settings
from services.storage.local import LocalObjectStore
from tests.fixtures.evaluation import (
    D0,
    D1,
    add_entity,
    add_user,
    scenario_series,
    watch,
    write_series,
)
from tests.fixtures.ws import (
    ALERT_FIELDS,
    ServerProcess,
    WsClient,
    connections_refused,
    insert_alerts,
    make_entity,
    make_user,
    terminate_listeners,
    wait_for_subscribers,
)

StartServer = Callable[..., ServerProcess]
MakeToken = Callable[..., str]


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server()


async def test_only_the_graphql_transport_ws_subprotocol_is_accepted(
    server: ServerProcess,
) -> None:
    async with connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


@pytest.mark.parametrize("token_kind", ["none", "garbage", "expired", "wrong-secret"])
async def test_connection_init_without_a_valid_token_is_closed_4403(
    server: ServerProcess, make_token: MakeToken, token_kind: str
) -> None:
    tokens = {
        "none": None,
        "garbage": "not.a.jwt",
        "expired": make_token(ttl_seconds=-120),
        "wrong-secret": _token_signed_with("another-secret-0123456789-abcdefghijklmnop"),
    }
    async with WsClient.connect(server.ws_url) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.init(tokens[token_kind])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def _token_signed_with(secret: str) -> str:
    from services.auth.tokens import issue_token

    return issue_token(secret, uuid.uuid4())


async def test_subscribe_before_connection_init_is_refused(server: ServerProcess) -> None:
    async with WsClient.connect(server.ws_url) as client:
        await client.subscribe("1")
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize("key", ["Authorization", "authorization"])
async def test_alerts_reach_their_owner_and_never_another_user(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken, key: str
) -> None:
    alice, bob = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    async with (
        WsClient.connect(server.ws_url) as alice_ws,
        WsClient.connect(server.ws_url) as bob_ws,
    ):
        assert (await alice_ws.init(make_token(alice), key=key))["type"] == "connection_ack"
        assert (await bob_ws.init(make_token(bob), key=key))["type"] == "connection_ack"
        await alice_ws.subscribe("a")
        await bob_ws.subscribe("b")
        await wait_for_subscribers(server, 2)
        alice_ids = await insert_alerts(pool, [(alice, entity)] * 3)
        bob_ids = await insert_alerts(pool, [(bob, entity)])
        received = await alice_ws.next_alerts(3)
        assert [a["id"] for a in received] == [str(i) for i in alice_ids]
        assert received[0]["type"] == "TREND_BREAK" and received[0]["stock"]["ticker"]
        assert [a["id"] for a in await bob_ws.next_alerts(1)] == [str(i) for i in bob_ids]
        await alice_ws.assert_silent(0.5)
        await bob_ws.assert_silent(0.1)
    await wait_for_subscribers(server, 0)  # disconnecting unregisters from the hub


async def test_after_replays_then_goes_live_without_gap_or_duplicate(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    user, other = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    history = await insert_alerts(pool, [(user, entity)] * 5)
    written = list(history)

    async def keep_writing() -> None:
        for _ in range(40):
            written.extend(await insert_alerts(pool, [(user, entity)] * 2))
            await insert_alerts(pool, [(other, entity)])
            await asyncio.sleep(0.01)

    async with WsClient.connect(server.ws_url) as client:
        await client.init(make_token(user))
        writer = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.05)  # the switch from replay to live happens mid-stream
        await client.subscribe("1", after=str(history[1]))
        await writer
        expected = [str(i) for i in written[2:]]
        received = await client.next_alerts(len(expected), seconds=30)
        assert [a["id"] for a in received] == expected
        await client.assert_silent(0.5)


@pytest.mark.parametrize(
    ("after", "code"),
    [("not-an-id", "BAD_USER_INPUT"), ("unknown", "NOT_FOUND"), ("others", "NOT_FOUND")],
)
async def test_bad_after_is_an_error_for_that_operation_only(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken, after: str, code: str
) -> None:
    user, other = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    (others_alert,) = await insert_alerts(pool, [(other, entity)])
    values = {"not-an-id": "not-an-id", "unknown": str(uuid.uuid4()), "others": str(others_alert)}
    async with WsClient.connect(server.ws_url) as client:
        await client.init(make_token(user))
        await client.subscribe("bad", after=values[after])
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "bad"
        assert [e["extensions"]["code"] for e in message["payload"]] == [code]
        assert str(others_alert) not in str(message)
        await client.subscribe("good")  # the connection is still usable
        await wait_for_subscribers(server, 1)
        ids = await insert_alerts(pool, [(user, entity)])
        assert [a["id"] for a in await client.next_alerts(1)] == [str(ids[0])]


async def test_each_event_is_resolved_with_fresh_dataloaders(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    user, watcher = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    async with WsClient.connect(server.ws_url) as client:
        await client.init(make_token(user))
        await client.subscribe("1", fields="id stock { ticker watcherCount }")
        await wait_for_subscribers(server, 1)
        await insert_alerts(pool, [(user, entity)])
        first = await client.next_alerts(1)
        await pool.execute(
            "INSERT INTO watchlists (user_id, entity_id) VALUES ($1, $3), ($2, $3)",
            user,
            watcher,
            entity,
        )
        await insert_alerts(pool, [(user, entity)])
        second = await client.next_alerts(1)
    assert first[0]["stock"]["watcherCount"] == 0
    assert second[0]["stock"]["watcherCount"] == 2


async def test_alerts_committed_while_the_listener_is_down_arrive_once_after_reconnect(
    server: ServerProcess,
    pool: asyncpg.Pool,
    make_token: MakeToken,
    database_url: str,
    server_dsn: str,
) -> None:
    user = await make_user(pool)
    entity = await make_entity(pool)
    database = database_name(database_url)
    async with WsClient.connect(server.ws_url) as client:
        await client.init(make_token(user))
        await client.subscribe("1")
        await wait_for_subscribers(server, 1)
        before = await insert_alerts(pool, [(user, entity)] * 2)
        assert [a["id"] for a in await client.next_alerts(2)] == [str(i) for i in before]
        async with connections_refused(server_dsn, database):
            assert await terminate_listeners(server_dsn, database, server.pid) == 1
            missed = await insert_alerts(pool, [(user, entity)] * 3)
            await asyncio.sleep(0.5)  # the server keeps failing to reconnect meanwhile
        assert [a["id"] for a in await client.next_alerts(3)] == [str(i) for i in missed]
        later = await insert_alerts(pool, [(user, entity)])
        assert [a["id"] for a in await client.next_alerts(1)] == [str(i) for i in later]
        await client.assert_silent(0.5)


@pytest.mark.slow
async def test_two_server_processes_each_deliver_their_subscribers_own_alerts(
    start_server: StartServer, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    first, second = start_server(), start_server()
    users = [await make_user(pool) for _ in range(4)]
    entity = await make_entity(pool)
    async with (
        WsClient.connect(first.ws_url) as a,
        WsClient.connect(first.ws_url) as b,
        WsClient.connect(second.ws_url) as c,
        WsClient.connect(second.ws_url) as d,
    ):
        clients = [a, b, c, d]
        # users[0] listens on both processes; users[3] listens nowhere.
        owners = [users[0], users[1], users[0], users[2]]
        for client, owner in zip(clients, owners, strict=True):
            await client.init(make_token(owner))
            await client.subscribe("1")
        await wait_for_subscribers(first, 2)
        await wait_for_subscribers(second, 2)
        ids = await insert_alerts(pool, [(u, entity) for u in users for _ in range(2)])
        by_user = {u: [str(i) for i in ids[n * 2 : n * 2 + 2]] for n, u in enumerate(users)}
        for client, owner in zip(clients, owners, strict=True):
            assert [x["id"] for x in await client.next_alerts(2)] == by_user[owner]
        for client in clients:
            await client.assert_silent(0.3)


async def test_a_subscriber_that_stops_reading_is_dropped_with_an_error_and_can_resume(
    start_server: StartServer, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    server = start_server(ALERT_SUBSCRIBER_QUEUE="4")
    slow_user, fast_user = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    big_text = secrets.token_urlsafe(75_000)  # incompressible, ~100 KB per alert
    # A bounded receive window and no client-side queue: once it stops reading, sends block.
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    slow_options = {"sock": sock, "max_queue": 1, "compression": None, "ping_interval": None}
    async with (
        WsClient.connect(server.ws_url, **slow_options) as slow,
        WsClient.connect(server.ws_url) as fast,
    ):
        await slow.init(make_token(slow_user))
        await fast.init(make_token(fast_user))
        await slow.subscribe("slow", fields="id whatChanged")
        await fast.subscribe("fast")
        await wait_for_subscribers(server, 2)
        rss_before = server.rss_bytes()
        pushed: list[str] = []
        for _ in range(150):  # ~15 MB, far more than the socket buffers hold
            pushed += map(
                str, await insert_alerts(pool, [(slow_user, entity)], what_changed=big_text)
            )
            fast_ids = await insert_alerts(pool, [(fast_user, entity)])
            assert [a["id"] for a in await fast.next_alerts(1)] == [str(fast_ids[0])]
        rss_growth = server.rss_bytes() - rss_before
        await wait_for_subscribers(server, 1)  # the slow one was dropped, the fast one lives
        received: list[str] = []
        while (message := await slow.receive())["type"] == "next":
            if "errors" in message["payload"]:
                codes = [e["extensions"]["code"] for e in message["payload"]["errors"]]
                assert codes == ["SUBSCRIBER_TOO_SLOW"]
                assert (await slow.receive())["type"] == "complete"
                break
            received.append(message["payload"]["data"]["alertCreated"]["id"])
        else:
            raise AssertionError(f"expected the operation to end with an error: {message}")
        assert 0 < len(received) < len(pushed) / 2
        assert received == pushed[: len(received)]
        # Same connection, resumed from the last alert it got: nothing lost.
        await slow.subscribe("resume", after=received[-1], fields="id")
        rest = await slow.next_alerts(len(pushed) - len(received), seconds=60)
        assert received + [a["id"] for a in rest] == pushed
    assert rss_growth < 8 * 1024 * 1024, rss_growth


@pytest.mark.slow
async def test_an_evaluation_run_is_delivered_by_both_server_processes(
    start_server: StartServer,
    pool: asyncpg.Pool,
    make_token: MakeToken,
    database_url: str,
    eval_store: LocalObjectStore,
    eval_settings: Settings,
) -> None:
    dates, closes, quarters = scenario_series()
    await write_series(eval_store, "ACME", dates, closes, quarters)
    entity = await add_entity(pool, "ACME", dates[0], dates[-1])
    first_user, second_user, unsubscribed = [await add_user(pool) for _ in range(3)]
    for user in (first_user, second_user, unsubscribed):
        await watch(pool, user, entity)
    await run_evaluation(eval_settings, database_url, as_of=D0, store=eval_store)  # silent
    first, second = start_server(), start_server()
    async with (
        WsClient.connect(first.ws_url) as on_first,
        WsClient.connect(second.ws_url) as on_second,
    ):
        await on_first.init(make_token(first_user))
        await on_second.init(make_token(second_user))
        await on_first.subscribe("1", fields="id headline newState stock { ticker }")
        await on_second.subscribe("1", fields="id headline newState stock { ticker }")
        await wait_for_subscribers(first, 1)
        await wait_for_subscribers(second, 1)
        summary = await run_evaluation(eval_settings, database_url, as_of=D1, store=eval_store)
        assert summary.alerts_written == 6  # valuation and trend, for each of three users
        for client, user in ((on_first, first_user), (on_second, second_user)):
            received = await client.next_alerts(2)
            owned = await pool.fetch(
                "SELECT id::text, headline FROM alert_history WHERE user_id = $1", user
            )
            assert sorted(a["id"] for a in received) == sorted(r["id"] for r in owned)
            assert "ACME entered its historically cheap zone" in {a["headline"] for a in received}
            assert {a["stock"]["ticker"] for a in received} == {"ACME"}
            await client.assert_silent(0.3)


async def test_server_shutdown_ends_open_subscriptions_cleanly(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    user = await make_user(pool)
    async with WsClient.connect(server.ws_url) as client:
        await client.init(make_token(user))
        await client.subscribe("1")
        await wait_for_subscribers(server, 1)
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionClosed):
            while True:
                message = await client.receive()
                assert message["type"] == "complete", message
    # uvicorn re-raises SIGTERM after a graceful shutdown, hence -15 rather than 0.
    assert server.proc.returncode in (0, -15), server.log_path.read_text()[-2000:]
    log = server.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


async def test_a_subscription_ends_with_4403_when_its_token_expires(
    server: ServerProcess, make_token: MakeToken, pool: asyncpg.Pool
) -> None:
    user_id = uuid.uuid4()
    token = make_token(sub=user_id, ttl_seconds=3)
    async with WsClient.connect(server.ws_url) as client:
        assert (await client.init(token))["type"] == "connection_ack"
        await client.subscribe("1")
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # no alert arrives: the token's expiry alone ends it
                await client.receive(seconds=15)
        waited = asyncio.get_running_loop().time() - started
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert closed.value.rcvd.reason == "token expired"
    assert 1.0 < waited < 8.0


async def test_one_users_sockets_each_get_their_own_selection_of_a_shared_event(
    server: ServerProcess, pool: asyncpg.Pool, make_token: MakeToken
) -> None:
    """An event is rendered once per (document, variables) and shared by the user's sockets."""
    user, other = await make_user(pool), await make_user(pool)
    entity = await make_entity(pool)
    (earlier,) = await insert_alerts(pool, [(user, entity)])
    selections = [
        ("full", ALERT_FIELDS, None),
        ("full-too", ALERT_FIELDS, None),
        ("narrow", "id headline", None),
        ("after", "id headline", str(earlier)),
    ]
    async with (
        WsClient.connect(server.ws_url) as a,
        WsClient.connect(server.ws_url) as b,
        WsClient.connect(server.ws_url) as c,
        WsClient.connect(server.ws_url) as d,
        WsClient.connect(server.ws_url) as others,
    ):
        clients = [a, b, c, d]
        for client, (op_id, fields, after) in zip(clients, selections, strict=True):
            await client.init(make_token(user))
            await client.subscribe(op_id, fields=fields, after=after)
        await others.init(make_token(other))
        await others.subscribe("o")
        await wait_for_subscribers(server, 5)
        ids = [str(i) for i in await insert_alerts(pool, [(user, entity)] * 3)]
        messages = [[await client.receive() for _ in ids] for client in clients]
        await others.assert_silent(0.3)
    for (op_id, _, _), received in zip(selections, messages, strict=True):
        assert [m["id"] for m in received] == [op_id] * 3
        assert [m["payload"]["data"]["alertCreated"]["id"] for m in received] == ids
    full, full_too, narrow, replayed_then_live = (
        [m["payload"]["data"]["alertCreated"] for m in received] for received in messages
    )
    assert full == full_too
    assert set(full[0]) == {"id", "type", "asOf", "newState", "headline", "createdAt", "stock"}
    assert full[0]["stock"]["ticker"]
    assert (
        narrow == replayed_then_live == [{"id": x["id"], "headline": x["headline"]} for x in full]
    )


@pytest.mark.parametrize("setting", [None, "1"])
async def test_permessage_deflate_is_negotiated_only_when_configured(
    start_server: StartServer, setting: str | None
) -> None:
    server = start_server(**({} if setting is None else {"WEBSOCKET_COMPRESSION": setting}))
    async with WsClient.connect(server.ws_url) as client:  # offers permessage-deflate
        negotiated = [e.name for e in client.ws.protocol.extensions]
    assert negotiated == ([] if setting is None else ["permessage-deflate"])


async def test_a_popular_stocks_burst_reaches_subscribers_on_two_processes_once_in_order(
    start_server: StartServer,
    pool: asyncpg.Pool,
    make_token: MakeToken,
    database_url: str,
    eval_store: LocalObjectStore,
    tmp_path: Path,
) -> None:
    settings = Settings.from_env(
        {
            "OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}",
            "DATA_DIR": str(tmp_path),
            "EVALUATION_ALERT_CHUNK": "250",
        }
    )
    dates, closes, quarters = scenario_series()
    await write_series(eval_store, "ACME", dates, closes, quarters)
    entity = await add_entity(pool, "ACME", dates[0], dates[-1])
    watchers: list[uuid.UUID] = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO users (id) SELECT gen_random_uuid() FROM generate_series(1, 3000) "
            "RETURNING id"
        )
    ]
    await pool.execute(
        "INSERT INTO watchlists (user_id, entity_id) SELECT unnest($1::uuid[]), $2",
        watchers,
        entity,
    )
    await run_evaluation(settings, database_url, as_of=D0, store=eval_store)  # silent
    ordered = sorted(watchers)
    # Watchers from the first, a middle and the last chunk, on each process.
    picked = [ordered[0], ordered[1_500], ordered[-1], ordered[1], ordered[1_501], ordered[-2]]
    first, second = start_server(), start_server()
    clients = [WsClient.connect((first if n < 3 else second).ws_url) for n in range(6)]
    async with (
        clients[0] as c0,
        clients[1] as c1,
        clients[2] as c2,
        clients[3] as c3,
        clients[4] as c4,
        clients[5] as c5,
    ):
        connected = [c0, c1, c2, c3, c4, c5]
        for client, user in zip(connected, picked, strict=True):
            await client.init(make_token(user))
            await client.subscribe("1")
        await wait_for_subscribers(first, 3)
        await wait_for_subscribers(second, 3)
        summary = await run_evaluation(settings, database_url, as_of=D1, store=eval_store)
        assert summary.alerts_written == 6_000  # valuation and trend, for every watcher
        for client, user in zip(connected, picked, strict=True):
            received = [a["id"] for a in await client.next_alerts(2)]
            owned = await pool.fetch(
                "SELECT id::text FROM alert_history WHERE user_id = $1 ORDER BY commit_seq", user
            )
            assert received == [r["id"] for r in owned]
            await client.assert_silent(0.3)
