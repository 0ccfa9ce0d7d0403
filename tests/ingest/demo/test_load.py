"""`python -m ingest demo`: deterministic CSVs, the real import and evaluator, idempotent."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import email
import email.policy
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ingest.demo.csv_files import (
    END,
    TABLE_COLUMNS,
    build_series,
    dividends_of,
    write_demo_csvs,
)
from ingest.demo.load import DemoSummary, dates_to_replay, run_demo, watched_tickers
from ingest.demo.stocks import BASELINE, DEMO_STOCKS, REPLAY_DATES, TICKER_SUFFIX
from services.auth.tokens import DEMO_USER_EMAIL, DEMO_USER_ID, issue_token
from services.db import dsn_with_database
from services.market.evaluation import EntitySeries, compute_signal
from services.market.records import Dividend, QuarterFundamentals, Split
from services.market.signals.dividend import evaluate_dividends
from services.market.signals.kind import UNKNOWN
from services.market.signals.registry import KINDS, EvaluationParams
from services.settings import Settings
from services.signal_store import states_of
from tests.databases import clone_database, drop_database
from tests.fixtures.app import TEST_JWT_SECRET
from tests.paths import ROOT
from web.app import create_app

# The alerts the demo is designed to produce for the demo user (ticker, type, before, after).
EXPECTED_ALERTS = {
    ("ORBT.DEMO", "trend_break", "ABOVE_200DMA", "BELOW_200DMA"),
    ("LMFD.DEMO", "trend_break", "BELOW_200DMA", "ABOVE_200DMA"),
    ("BRKW.DEMO", "valuation_regime_change", "NORMAL", "CHEAP"),
    ("BRKW.DEMO", "trend_break", "ABOVE_200DMA", "BELOW_200DMA"),
    ("HVNT.DEMO", "valuation_regime_change", "NORMAL", "EXPENSIVE"),
    ("QNTX.DEMO", "fundamental_inflection", "IMPROVING", "DETERIORATING"),
    ("QNTX.DEMO", "dividend_change", "PAYING", "CUT"),
    ("CDNL.DEMO", "fundamental_inflection", "DETERIORATING", "IMPROVING"),
    ("VTXG.DEMO", "valuation_regime_change", "EXPENSIVE", "NORMAL"),
    ("VTXG.DEMO", "trend_break", "ABOVE_200DMA", "BELOW_200DMA"),
}
QUIET = {"STDY.DEMO", "SPLT.DEMO", "NWCO.DEMO"}  # watched, designed to stay silent

COUNTS_SQL = """
SELECT (SELECT count(*) FROM entities) AS entities,
       (SELECT count(*) FROM users) AS users,
       (SELECT count(*) FROM watchlists) AS watchlists,
       (SELECT count(*) FROM user_entity_settings) AS settings,
       (SELECT count(*) FROM entity_signals) AS signals,
       (SELECT count(*) FROM alert_history) AS alerts,
       (SELECT count(*) FROM backfill_queue) AS backfills
"""


# -- the generator alone ---------------------------------------------------------------------


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("*.csv")}


def test_csvs_are_deterministic_and_dolthub_shaped(tmp_path: Path) -> None:
    counts = write_demo_csvs(tmp_path / "a")
    write_demo_csvs(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert set(counts) == {f"{name}.csv" for name in TABLE_COLUMNS}
    assert counts["symbol.csv"] == len(DEMO_STOCKS) == 30
    assert counts["ohlcv.csv"] > 30 * 2000  # ~10 years of trading days for most tickers
    for name, columns in TABLE_COLUMNS.items():
        with (tmp_path / "a" / f"{name}.csv").open(newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames or ()) == columns
            rows = list(reader)
        assert all(row["act_symbol"].endswith(TICKER_SUFFIX) for row in rows)
        if "period" in columns:
            assert {row["period"] for row in rows} == {"Quarter"}
    assert not list((tmp_path / "a").glob("*.partial"))


def test_every_stock_is_labelled_synthetic() -> None:
    tickers = [s.ticker for s in DEMO_STOCKS]
    assert len(set(tickers)) == len(tickers)
    for stock in DEMO_STOCKS:
        assert stock.ticker.endswith(".DEMO") and len(stock.ticker) <= 10
        assert stock.name.endswith(" (demo)")
        assert stock.sector.startswith("Synthetic demo — ")
    assert len(watched_tickers()) == 10


def test_prices_are_valid_bars() -> None:
    for stock in DEMO_STOCKS:
        series = build_series(stock)
        assert series.days[-1] == END
        assert min(series.closes) > 0
        assert series.days == sorted(set(series.days))


def signal_states(root: str, day: date) -> tuple[str, str, str]:
    """The evaluator's pure computation on a stock's generated data (no database)."""
    stock = next(s for s in DEMO_STOCKS if s.root == root)
    series = build_series(stock)
    debt, cash = stock.debt_and_cash()
    quarters = [
        QuarterFundamentals(
            q.period_end,
            sales=q.sales,
            ebitda=q.ebitda,
            diluted_eps=q.eps,
            shares_outstanding=q.shares,
            cash=cash,
            total_debt=debt,
        )
        for q in series.quarters
    ]
    splits = [Split(stock.split[0], stock.split[1], stock.split[2])] if stock.split else []
    signal = compute_signal(
        EntitySeries(series.days, series.closes, quarters, splits), day, EvaluationParams()
    )
    return (
        signal.valuation_regime.value,
        signal.trend_position.value,
        signal.fundamental_direction.value,
    )


@pytest.mark.parametrize(
    ("root", "before", "after"),
    [
        ("ORBT", ("NORMAL", "ABOVE_200DMA", "IMPROVING"), ("NORMAL", "BELOW_200DMA", "IMPROVING")),
        (
            "HVNT",
            ("NORMAL", "ABOVE_200DMA", "IMPROVING"),
            ("EXPENSIVE", "ABOVE_200DMA", "IMPROVING"),
        ),
        (
            "QNTX",
            ("NORMAL", "ABOVE_200DMA", "IMPROVING"),
            ("NORMAL", "ABOVE_200DMA", "DETERIORATING"),
        ),
        ("SPLT", ("NORMAL", "ABOVE_200DMA", "IMPROVING"), ("NORMAL", "ABOVE_200DMA", "IMPROVING")),
        ("FRLB", ("UNKNOWN", "UNKNOWN", "UNKNOWN"), ("UNKNOWN", "UNKNOWN", "UNKNOWN")),
    ],
)
def test_stories_hold_in_the_model(
    root: str, before: tuple[str, str, str], after: tuple[str, str, str]
) -> None:
    assert signal_states(root, BASELINE) == before
    assert signal_states(root, REPLAY_DATES[-1]) == after


def dividend_reading(root: str, day: date) -> Any:
    stock = next(s for s in DEMO_STOCKS if s.root == root)
    paid = [Dividend(ex, amount) for ex, amount in dividends_of(stock)]
    splits = [Split(stock.split[0], stock.split[1], stock.split[2])] if stock.split else []
    return evaluate_dividends(paid, splits, day)


def test_the_dividend_cut_and_the_special_dividend_hold_in_the_model() -> None:
    # QNTX halves its dividend on the May ex-date: paying until then, cut on the next replay.
    assert [dividend_reading("QNTX", day).state for day in (BASELINE, *REPLAY_DATES)] == [
        "PAYING",
        "PAYING",
        "CUT",
        "CUT",
    ]
    cut = dividend_reading("QNTX", REPLAY_DATES[1])
    assert cut.last_ex_date == date(2025, 5, 14) and round(cut.cut_pct) == 50
    # STDY's 2.50 one-off is more than 3x its regular ~0.41: ignored, so it stays PAYING.
    for day in (BASELINE, *REPLAY_DATES):
        assert dividend_reading("STDY", day).state == "PAYING"
    special = dividend_reading("STDY", REPLAY_DATES[1])
    assert special.specials_ignored == 1 and special.last_amount < 0.5
    # SPLT's dividend per share drops 75% with its 4-for-1 split: no cut once adjusted.
    for day in (BASELINE, *REPLAY_DATES):
        assert dividend_reading("SPLT", day).state == "PAYING"
    # Stocks without dividends pay none (the import marks them fetched, not unknown).
    assert dividend_reading("ORBT", END).state == "NONE"


def test_replay_resumes_and_never_rewinds() -> None:
    assert dates_to_replay(None) == [BASELINE, *REPLAY_DATES]
    assert dates_to_replay(BASELINE) == list(REPLAY_DATES)
    assert dates_to_replay(REPLAY_DATES[0]) == list(REPLAY_DATES[1:])
    assert dates_to_replay(REPLAY_DATES[-1]) == []
    assert dates_to_replay(date(2030, 1, 1)) == []


# -- the whole command against a real database (run once for the module) ---------------------


@dataclasses.dataclass
class DemoDatabase:
    dsn: str
    settings: Settings
    summary: DemoSummary


@pytest.fixture(scope="module")
def demo_db(
    server_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoDatabase]:
    """A fresh database with `run_demo` applied once (the expensive part, shared)."""
    name = f"mc_demo_{uuid.uuid4().hex[:12]}"
    asyncio.run(clone_database(server_dsn, template_database, name))
    data_dir = tmp_path_factory.mktemp("demo-data")
    dsn = dsn_with_database(server_dsn, name)
    settings = dataclasses.replace(
        Settings.from_env({"APP_ENV": "development", "DATA_DIR": str(data_dir)}),
        database_url=dsn,
        jwt_secret=TEST_JWT_SECRET,
    )
    summary = asyncio.run(run_demo(settings, dsn))
    try:
        yield DemoDatabase(dsn, settings, summary)
    finally:
        asyncio.run(drop_database(server_dsn, name))


@pytest.fixture
async def demo_conn(demo_db: DemoDatabase) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(demo_db.dsn)
    yield conn
    await conn.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_demo_loads_entities_user_and_designed_alerts(
    demo_db: DemoDatabase, demo_conn: asyncpg.Connection
) -> None:
    summary = demo_db.summary
    assert summary.failures == []
    assert summary.evaluated == [BASELINE, *REPLAY_DATES]
    assert (demo_db.settings.data_dir / "demo-csv" / "ohlcv.csv").is_file()
    entities = await demo_conn.fetch("SELECT * FROM entities ORDER BY ticker")
    assert len(entities) == 30
    for entity in entities:
        assert entity["data_status"] == "ready" and entity["has_price_data"], entity["ticker"]
        assert entity["sector"].startswith("Synthetic demo — ")
        assert entity["name"].endswith(" (demo)")
        assert entity["price_data_max_date"] == END
    assert not any(e["in_symbol_universe"] for e in entities), "real tickers stay addable"
    user = await demo_conn.fetchrow("SELECT * FROM users WHERE id = $1", DEMO_USER_ID)
    assert user is not None
    assert user["email"] == DEMO_USER_EMAIL and user["investing_style"] == "blend"
    assert user["onboarded_at"] is not None
    watched = await demo_conn.fetch(
        "SELECT e.ticker FROM watchlists w JOIN entities e ON e.id = w.entity_id "
        "WHERE w.user_id = $1",
        DEMO_USER_ID,
    )
    assert {r["ticker"] for r in watched} == set(watched_tickers())
    alerts = await demo_conn.fetch(
        "SELECT e.ticker, a.alert_type, a.previous_state, a.new_state, a.as_of "
        "FROM alert_history a JOIN entities e ON e.id = a.entity_id WHERE a.user_id = $1",
        DEMO_USER_ID,
    )
    assert {(a[0], a[1], a[2], a[3]) for a in alerts} == EXPECTED_ALERTS
    assert len({a["alert_type"] for a in alerts}) == 4
    assert all(a["as_of"] in REPLAY_DATES for a in alerts), "the baseline sets states silently"
    assert not {a["ticker"] for a in alerts} & QUIET, "the split and the special must not alert"
    (cut,) = [a for a in alerts if a["alert_type"] == "dividend_change"]
    assert cut["as_of"] == REPLAY_DATES[1]
    headline = await demo_conn.fetchval(
        "SELECT headline FROM alert_history WHERE user_id = $1 AND alert_type = 'dividend_change'",
        DEMO_USER_ID,
    )
    assert headline == "QNTX.DEMO cut its dividend by 50 %"
    special = await demo_conn.fetchval(
        "SELECT s.details->'dividend_specials_ignored' FROM entity_signals s "
        "JOIN entities e ON e.id = s.entity_id WHERE e.ticker = 'STDY.DEMO' AND s.as_of = $1",
        END,
    )
    assert special == "1"
    assert summary.alerts == len(EXPECTED_ALERTS)


@pytest.mark.slow
async def test_the_demo_users_alerts_arrive_as_one_digest_email(
    demo_db: DemoDatabase, demo_conn: asyncpg.Connection
) -> None:
    assert demo_db.summary.emails == 1
    (eml,) = sorted((demo_db.settings.data_dir / "outbox").glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == DEMO_USER_EMAIL
    assert message["Subject"].startswith(f"{len(EXPECTED_ALERTS)} material changes")
    text = message.get_body(("plain",))
    assert text is not None
    headlines = await demo_conn.fetch(
        "SELECT headline FROM alert_history WHERE user_id = $1", DEMO_USER_ID
    )
    for row in headlines:
        assert row["headline"] in text.get_content()
    statuses = await demo_conn.fetch("SELECT DISTINCT status, channel FROM deliveries")
    assert [tuple(r) for r in statuses] == [("delivered", "email")]


@pytest.mark.slow
async def test_signals_cover_every_state(demo_conn: asyncpg.Connection) -> None:
    rows = await demo_conn.fetch(
        "SELECT valuation_regime, trend_position, fundamental_direction, valuation_metric "
        "FROM entity_signals WHERE as_of = $1",
        END,
    )
    assert len(rows) == 30
    assert {r["valuation_regime"] for r in rows} == {"CHEAP", "NORMAL", "EXPENSIVE", "UNKNOWN"}
    assert {r["trend_position"] for r in rows} == {"ABOVE_200DMA", "BELOW_200DMA", "UNKNOWN"}
    assert {r["fundamental_direction"] for r in rows} == {"IMPROVING", "DETERIORATING", "UNKNOWN"}
    assert {r["valuation_metric"] for r in rows} == {"EV/EBITDA", "EV/SALES", None}
    dividends = await demo_conn.fetch(
        "SELECT states->>'dividends' AS state FROM entity_signals WHERE as_of = $1", END
    )
    assert {r["state"] for r in dividends} == {"PAYING", "CUT", "NONE"}


@pytest.mark.slow
async def test_the_api_shows_the_demo(demo_db: DemoDatabase) -> None:
    app = create_app(demo_db.settings, database_url=demo_db.dsn)
    token = issue_token(TEST_JWT_SECRET, DEMO_USER_ID, email=DEMO_USER_EMAIL)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = await _gql(
                http,
                '{ stock(ticker: "brkw.demo") { name sector signal { valuationRegime } } '
                "popularStocks(limit: 3) { ticker watcherCount } }",
            )
            stock = body["data"]["stock"]
            assert stock["name"] == "Brookwell Bancorp (demo)"
            assert stock["sector"] == "Synthetic demo — Financials"
            assert stock["signal"]["valuationRegime"] == "CHEAP"
            assert all(s["watcherCount"] == 1 for s in body["data"]["popularStocks"])
            body = await _gql(
                http,
                "{ watchlist { count } alerts(first: 50) { totalCount edges { node { type } } } }",
                token,
            )
            assert body["data"]["watchlist"]["count"] == 10
            assert body["data"]["alerts"]["totalCount"] == len(EXPECTED_ALERTS)
            body = await _gql(
                http,
                "{ alerts(type: DIVIDEND_CHANGE) { edges { node { headline whatChanged "
                "whyItMatters beforeVsNow whatDidntChange details { dividendBefore dividendNow "
                "intervalDays } } } } watchlist { items { stock { ticker } dividendState } } }",
                token,
            )
            (edge,) = body["data"]["alerts"]["edges"]
            cut = edge["node"]
            assert cut["headline"] == "QNTX.DEMO cut its dividend by 50 %"
            assert all(cut[k] for k in ("whatChanged", "whyItMatters", "beforeVsNow"))
            assert "$0.3258 a share, down from $0.6516" in cut["whatChanged"]
            assert cut["whatDidntChange"]
            assert cut["details"]["dividendNow"] == pytest.approx(0.3258)
            assert cut["details"]["dividendBefore"] == pytest.approx(0.6516)
            assert cut["details"]["intervalDays"] == 92  # median of the last five gaps
            arrows = {
                i["stock"]["ticker"]: i["dividendState"] for i in body["data"]["watchlist"]["items"]
            }
            assert arrows["QNTX.DEMO"] == "DOWN"
            assert arrows["STDY.DEMO"] == arrows["SPLT.DEMO"] == arrows["ORBT.DEMO"] == "NEUTRAL"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_demo_stocks_signal_history_ends_in_the_states_the_evaluator_stored(
    demo_db: DemoDatabase, demo_conn: asyncpg.Connection
) -> None:
    query = """query($t: String!, $to: Date) {
      stock(ticker: $t) { signalHistory(to: $to) { lastDay states { kind state } } }
    }"""
    # 60 ten-year histories in a few seconds: far more than one anonymous client's budget per
    # minute (the point here is the states, not the rate limit).
    settings = dataclasses.replace(demo_db.settings, graphql_cost_per_minute=10**9)
    app = create_app(settings, database_url=demo_db.dsn)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for day in (BASELINE, REPLAY_DATES[-1]):
                rows = await demo_conn.fetch(
                    "SELECT e.ticker, s.* FROM entity_signals s "
                    "JOIN entities e ON e.id = s.entity_id WHERE s.as_of = $1",
                    day,
                )
                assert rows
                for row in rows:
                    response = await http.post(
                        "/graphql",
                        json={"query": query, "variables": {"t": row["ticker"], "to": str(day)}},
                    )
                    history = response.json()["data"]["stock"]["signalHistory"]
                    stored = states_of(row)
                    expected = {k.graphql_name: stored.get(k.name, UNKNOWN) for k in KINDS}
                    shown = {s["kind"]: s["state"] for s in history["states"]}
                    assert shown == expected, (row["ticker"], day)
                    if history["lastDay"] is not None:
                        assert history["lastDay"] <= str(day)


async def _gql(http: httpx.AsyncClient, query: str, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post("/graphql", json={"query": query}, headers=headers)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_second_run_via_the_cli_adds_nothing(
    demo_db: DemoDatabase, demo_conn: asyncpg.Connection
) -> None:
    before = await table_counts(demo_conn)
    objects = demo_db.settings.data_dir / "objects"
    files_before = digest_tree(objects)
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": demo_db.dsn,
        "DATA_DIR": str(demo_db.settings.data_dir),
    }
    env.pop("OBJECT_STORE_URL", None)
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ingest", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "nothing to replay" in completed.stdout and "0 failures" in completed.stdout
    assert await table_counts(demo_conn) == before
    assert digest_tree(objects) == files_before


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(COUNTS_SQL)
    assert row is not None
    return dict(row)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
