"""DoltHubClient against the fake DoltHub over real HTTP: parsing, errors, retries, pacing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from decimal import Decimal
from itertools import pairwise

import httpx
import pytest

from ingest.dolthub.client import (
    DoltHubClient,
    DoltHubDeadlineError,
    DoltHubQueryError,
    DoltHubResponseError,
    DoltHubUnavailable,
    Pacer,
    retry_after_seconds,
)
from ingest.dolthub.values import price_values
from services.settings import Settings
from tests.fakes.dolthub_server import LEAK_PATH, STOCKS_DB, FakeDoltHub

Factory = Callable[..., DoltHubClient]
OHLCV_2020_Q1 = (
    "SELECT `date`, `open`, `high`, `low`, `close`, `volume` FROM `ohlcv` "
    "WHERE `act_symbol` = 'AAPL' AND `date` >= '2020-01-01' AND `date` < '2020-04-01' "
    "ORDER BY `date`"
)


def truth(fake: FakeDoltHub, ticker: str, start: str, end: str) -> list[dict[str, str | None]]:
    return [r for r in fake.data.ohlcv(ticker) if start <= (r["date"] or "") < end]


async def test_rows_are_strings_keyed_by_column(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    expected = truth(fake_dolthub, "AAPL", "2020-01-01", "2020-04-01")
    assert not result.truncated
    assert {c.name for c in result.columns} == {"date", "open", "high", "low", "close", "volume"}
    assert len(result.rows) == len(expected) > 50
    for got, want in zip(result.rows, expected, strict=True):
        assert got == {k: want[k] for k in ("date", "open", "high", "low", "close", "volume")}
        assert all(isinstance(v, str) for v in got.values())


async def test_fake_really_shuffles_column_order(fake_dolthub: FakeDoltHub) -> None:
    """Guards the test above: the wire order of keys varies between rows."""
    async with httpx.AsyncClient() as http:
        url = f"{fake_dolthub.url}/{STOCKS_DB}/master"
        payload = (await http.get(url, params={"q": OHLCV_2020_Q1})).json()
    orders = {tuple(row) for row in payload["rows"]}
    assert len(orders) > 1
    assert all(isinstance(v, str) for row in payload["rows"] for v in row.values())


async def test_decimal_strings_parse_exactly(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    result = await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    first = price_values(result.rows[0])
    wire = result.rows[0]["close"]
    assert wire is not None and len(wire.split(".")[1]) == 4  # e.g. "156.2900"
    assert first.close == Decimal(wire)
    assert str(first.close) == wire  # exact: no float round trip


async def test_nulls_come_back_as_none(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    sql = (
        "SELECT `date`, `notes_payable` FROM `balance_sheet_liabilities` "
        "WHERE `act_symbol` = 'MSFT' AND `period` = 'Quarter' "
        "AND `date` >= '2011-01-01' AND `date` < '2027-01-01' ORDER BY `date`"
    )
    result = await dolthub_client.query("post-no-preference/earnings", sql)
    expected = fake_dolthub.data.earnings("MSFT", "balance_sheet_liabilities")
    assert [r["notes_payable"] for r in result.rows] == [r["notes_payable"] for r in expected]
    assert any(r["notes_payable"] is None for r in result.rows)


async def test_row_limit_marks_truncated(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.row_limit = 10
    result = await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert result.truncated
    assert len(result.rows) == 10


async def test_bad_sql_is_permanent_with_message(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    with pytest.raises(DoltHubQueryError) as caught:
        await dolthub_client.query(STOCKS_DB, "SELECT `nope` FROM `ohlcv` LIMIT 1")
    assert 'column "nope" could not be found' in caught.value.message
    assert caught.value.transient is False
    assert len(fake_dolthub.requests) == 1  # never retried


async def test_unknown_database_or_branch_is_permanent(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    with pytest.raises(DoltHubQueryError, match="could not find database"):
        await dolthub_client_factory().query("someone/else", "SELECT `date` FROM `ohlcv`")
    with pytest.raises(DoltHubQueryError, match="at main"):
        await dolthub_client_factory(branch="main").query(STOCKS_DB, OHLCV_2020_Q1)
    assert len(fake_dolthub.requests) == 2


async def test_malformed_database_name_never_sent(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    with pytest.raises(DoltHubQueryError, match="owner/name"):
        await dolthub_client.query("../../etc", "SELECT 1")
    assert fake_dolthub.requests == []


async def test_deadline_is_its_own_transient_error(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.deadline_days = 30
    with pytest.raises(DoltHubDeadlineError) as caught:
        await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert caught.value.transient is True
    assert "context deadline exceeded" in caught.value.message
    assert len(fake_dolthub.requests) == 1  # the caller shrinks the window, not the client
    assert dolthub_client.stats.deadlines == 1


async def test_deadline_detected_whatever_the_http_status(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.deadline_days = 30
    for status in (200, 504):
        fake_dolthub.switches.deadline_status = status
        with pytest.raises(DoltHubDeadlineError):
            await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)


async def test_429_storm_is_retried_with_pacing(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    rps = 10.0
    client = dolthub_client_factory(rps=rps, max_retries=6)
    fake_dolthub.fail_next(4, status=429)
    result = await client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert len(result.rows) > 50
    times = fake_dolthub.request_times()
    assert len(times) == 5
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= 1 / rps - 0.02, gaps
    # After each 429 the shared pacer doubles its spacing: the storm slows everyone down.
    assert gaps[-1] >= 4 / rps - 0.02, gaps
    assert client.stats.rate_limited == 4
    assert client.stats.retries == 4


async def test_retry_after_is_honoured(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.fail_next(1, status=429, retry_after="1")
    await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    first, second = fake_dolthub.request_times()
    assert second - first >= 0.95


@pytest.mark.parametrize("status", [403, 500, 503, 520])
async def test_transient_statuses_are_retried(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient, status: int
) -> None:
    fake_dolthub.fail_next(2, status=status)
    result = await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert result.rows
    assert len(fake_dolthub.requests) == 3


async def test_persistent_5xx_becomes_unavailable(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    fake_dolthub.fail_next(10, status=503)
    client = dolthub_client_factory(max_retries=2)
    with pytest.raises(DoltHubUnavailable, match="HTTP 503") as caught:
        await client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert caught.value.transient is True
    assert len(fake_dolthub.requests) == 3


async def test_timeouts_are_retried_then_unavailable(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    fake_dolthub.switches.latency_ms = 600
    client = dolthub_client_factory(timeout=0.2, max_retries=1)
    with pytest.raises(DoltHubUnavailable, match="timeout"):
        await client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert len(fake_dolthub.requests) == 2


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DoltHubClient(f"http://127.0.0.1:{port}/api", max_retries=1, backoff_base=0.01)
    async with client:
        with pytest.raises(DoltHubUnavailable, match="network error"):
            await client.query(STOCKS_DB, "SELECT 1")


async def test_token_header_only_when_set(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    await dolthub_client_factory().query(STOCKS_DB, OHLCV_2020_Q1)
    await dolthub_client_factory(token="s3cret").query(STOCKS_DB, OHLCV_2020_Q1)
    without, with_token = fake_dolthub.requests
    assert without.authorization is None
    assert with_token.authorization == "token s3cret"


async def test_from_settings_uses_environment(fake_dolthub: FakeDoltHub) -> None:
    settings = Settings.from_env(
        {
            "DOLTHUB_API_URL": fake_dolthub.url,
            "DOLTHUB_TOKEN": "tkn",
            "DOLTHUB_RPS": "50",
            "DOLTHUB_MAX_RETRIES": "2",
        }
    )
    async with DoltHubClient.from_settings(settings) as client:
        assert client.branch == "master"
        assert client.max_retries == 2
        assert client.pacer.base_interval == pytest.approx(1 / 50)
        await client.query(settings.dolthub_stocks_db, OHLCV_2020_Q1)
    assert fake_dolthub.requests[0].authorization == "token tkn"
    assert fake_dolthub.requests[0].path == "/api/v1alpha1/post-no-preference/stocks/master"
    assert "tkn" not in repr(settings)


async def test_concurrent_callers_share_one_pacer(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    rps = 5.0
    client = dolthub_client_factory(rps=rps)
    await asyncio.gather(*(client.query(STOCKS_DB, OHLCV_2020_Q1) for _ in range(8)))
    times = fake_dolthub.request_times()
    assert len(times) == 8
    # Arrival times carry connection-setup jitter (8 new connections); sends are 1/rps apart.
    assert min(b - a for a, b in pairwise(times)) >= 1 / rps - 0.05
    assert times[-1] - times[0] >= 7 / rps - 0.05


async def test_pacer_recovers_after_throttling() -> None:
    pacer = Pacer(rps=10)
    pacer.throttled(0)
    pacer.throttled(0)
    assert pacer.interval == pytest.approx(0.4)
    for _ in range(20):
        pacer.succeeded()
    assert pacer.interval == pytest.approx(0.1)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3", cap=60) == 3
    assert retry_after_seconds("900", cap=60) == 60
    assert retry_after_seconds("soon", cap=60) is None
    assert retry_after_seconds(None, cap=60) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", cap=60) == 0


async def test_retries_are_logged_without_the_token(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    fake_dolthub.fail_next(2, status=503)
    client = dolthub_client_factory(token="very-secret-token")
    with caplog.at_level("DEBUG"):
        await client.query(STOCKS_DB, OHLCV_2020_Q1)
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 503" in retries[0]
    assert "very-secret-token" not in caplog.text


async def test_redirects_are_not_followed(
    fake_dolthub: FakeDoltHub, dolthub_client: DoltHubClient
) -> None:
    fake_dolthub.switches.redirect_to = fake_dolthub.leak_url
    with pytest.raises(DoltHubResponseError, match="redirect") as caught:
        await dolthub_client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert not caught.value.transient
    assert "db_password" not in caught.value.message
    assert [r.path for r in fake_dolthub.requests] == [f"/api/v1alpha1/{STOCKS_DB}/master"]
    assert LEAK_PATH not in {r.path for r in fake_dolthub.requests}


async def test_a_body_over_the_cap_is_refused_without_reading_it_all(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    fake_dolthub.switches.oversize_bytes = 4 * 1024 * 1024  # chunked: no length up front
    client = dolthub_client_factory(max_response_bytes=256 * 1024)
    with pytest.raises(DoltHubResponseError, match="DOLTHUB_MAX_RESPONSE_MB"):
        await client.query(STOCKS_DB, OHLCV_2020_Q1)
    assert client.stats.requests == 1  # refused, not retried
    fake_dolthub.switches.oversize_bytes = None
    assert (await client.query(STOCKS_DB, OHLCV_2020_Q1)).rows  # a normal answer fits


async def test_a_declared_length_over_the_cap_is_refused_before_the_body(
    fake_dolthub: FakeDoltHub, dolthub_client_factory: Factory
) -> None:
    client = dolthub_client_factory(max_response_bytes=1024)  # one quarter's rows is more
    with pytest.raises(DoltHubResponseError, match="more than 1024 bytes"):
        await client.query(STOCKS_DB, OHLCV_2020_Q1)


async def test_max_response_mb_comes_from_settings() -> None:
    settings = Settings.from_env({"DOLTHUB_MAX_RESPONSE_MB": "2"})
    async with DoltHubClient.from_settings(settings) as client:
        assert client.max_response_bytes == 2 * 1024 * 1024
    assert Settings.from_env({}).dolthub_max_response_mb == 32
