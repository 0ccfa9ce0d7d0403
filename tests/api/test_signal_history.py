"""Stock.signalHistory over HTTP: data imported by import-csv, evaluated as the evaluator does."""

from __future__ import annotations

import csv
import math
from datetime import date
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ingest.demo.csv_files import END, write_demo_csvs
from ingest.demo.stocks import BASELINE, DEMO_STOCKS
from ingest.evaluation.run import run_evaluation
from ingest.jobs.csv_import import find_csv_files, run_import_csv
from ingest.progress import Progress
from services.market.signals.registry import KINDS, AlertType
from services.settings import Settings
from services.signal_store import states_of
from services.storage.local import LocalObjectStore
from tests.fixtures.app import GraphQLClient

HIT = "material-changes; hit"
MISS = "material-changes; fwd=miss"
QUERY = """query($t: String!, $from: Date, $to: Date) {
  stock(ticker: $t) {
    signalHistory(from: $from, to: $to) {
      from to firstDay lastDay tradingDays years states { kind state arrow }
      transitions { asOf kind previousState newState alerting details { close sma200 } }
      alertsPerYear { kind alerts perYear }
    }
  }
}"""
# A split (SPLT), a trend break (ORBT) and a stock listed too late for most states (FRLB).
IMPORTED = ("SPLT", "ORBT", "FRLB")


async def import_csvs(pool: asyncpg.Pool, store: LocalObjectStore, directory: Path) -> None:
    progress = Progress("import-csv", interactive=False)
    await run_import_csv(pool, store, find_csv_files(directory), progress)
    assert not progress.failures, progress.failures


@pytest.fixture
async def imported(pool: asyncpg.Pool, ingest_store: LocalObjectStore, tmp_path: Path) -> Path:
    """Three demo stocks imported from their DoltHub-shaped CSVs into the app's store."""
    directory = tmp_path / "csv"
    write_demo_csvs(directory, [s for s in DEMO_STOCKS if s.root in IMPORTED])
    await import_csvs(pool, ingest_store, directory)
    return directory


async def ask(
    http: httpx.AsyncClient, ticker: str, start: str | None = None, end: str | None = None
) -> tuple[dict[str, Any], str]:
    variables = {"t": ticker, "from": start, "to": end}
    response = await http.post("/graphql", json={"query": QUERY, "variables": variables})
    body: dict[str, Any] = response.json()
    return body, response.headers["cache-status"]


async def test_history_defaults_to_ten_years_up_to_the_last_price(
    client: httpx.AsyncClient, imported: Path
) -> None:
    body, _ = await ask(client, "ORBT.DEMO")
    history = body["data"]["stock"]["signalHistory"]
    assert history["to"] == END.isoformat() and history["from"] == "2015-06-30"
    assert history["lastDay"] == END.isoformat()
    assert 9.9 < history["years"] < 10.1
    # One rate per registered kind, in registry order.
    assert [r["kind"] for r in history["alertsPerYear"]] == [t.name for t in AlertType]
    transitions = history["transitions"]
    assert [t["asOf"] for t in transitions] == sorted(t["asOf"] for t in transitions)
    trend = [t for t in transitions if t["kind"] == "TREND_BREAK" and t["alerting"]]
    assert trend and all(t["details"]["sma200"] is not None for t in trend)
    rate = next(r for r in history["alertsPerYear"] if r["kind"] == "TREND_BREAK")
    assert rate["alerts"] == len(trend)
    assert rate["perYear"] == pytest.approx(len(trend) / history["years"])
    silent = [t for t in transitions if not t["alerting"]]
    assert all("UNKNOWN" in (t["previousState"], t["newState"]) for t in silent)


async def test_last_day_states_equal_what_the_daily_evaluator_stored(
    client: httpx.AsyncClient,
    imported: Path,
    pool: asyncpg.Pool,
    settings: Settings,
    ingest_store: LocalObjectStore,
) -> None:
    tickers = [f"{root}.DEMO" for root in IMPORTED]
    for day in (BASELINE, END):
        summary = await run_evaluation(
            settings, None, as_of=day, tickers=tickers, store=ingest_store, pool=pool
        )
        assert summary.failures == 0 and summary.signals_written == len(tickers)
        for ticker in tickers:
            row = await pool.fetchrow(
                "SELECT s.* FROM entity_signals s JOIN entities e ON e.id = s.entity_id "
                "WHERE e.ticker = $1 AND s.as_of = $2",
                ticker,
                day,
            )
            assert row is not None
            stored = states_of(row)
            body, _ = await ask(client, ticker, "2015-01-01", day.isoformat())
            history = body["data"]["stock"]["signalHistory"]
            assert history["lastDay"] == day.isoformat()
            shown = {s["kind"]: s["state"] for s in history["states"]}
            expected = {k.graphql_name: stored.get(k.name, "UNKNOWN") for k in KINDS}
            assert shown == expected, (ticker, day)


async def test_a_split_inside_the_window_never_makes_a_transition(
    client: httpx.AsyncClient, imported: Path
) -> None:
    # The 4-for-1 split's ex-date is 2025-05-12: raw closes drop 75% overnight.
    body, _ = await ask(client, "SPLT.DEMO", "2025-04-01", END.isoformat())
    history = body["data"]["stock"]["signalHistory"]
    assert history["transitions"] == []
    assert history["firstDay"] == "2025-04-01" and history["tradingDays"] > 60


async def test_window_over_fifteen_years_is_bad_user_input(
    client: httpx.AsyncClient, imported: Path
) -> None:
    body, _ = await ask(client, "ORBT.DEMO", "2009-06-29", "2024-06-30")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "15 years" in body["errors"][0]["message"]
    body, _ = await ask(client, "ORBT.DEMO", "2024-06-30", "2024-01-01")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body, _ = await ask(client, "ORBT.DEMO", "2009-06-30", "2024-06-30")
    assert "errors" not in body, body


async def test_stock_without_prices_has_an_empty_history(gql: GraphQLClient, api_data: Any) -> None:
    await api_data.entity("NOPX", "No prices")
    body = await gql(QUERY, {"t": "NOPX", "from": "2020-01-01", "to": "2020-12-31"})
    history = body["data"]["stock"]["signalHistory"]
    assert history["tradingDays"] == 0 and history["transitions"] == []
    assert history["firstDay"] is None and history["years"] == 0
    assert {r["perYear"] for r in history["alertsPerYear"]} == {0}


async def test_history_is_public_and_cached_until_the_stocks_data_changes(
    client: httpx.AsyncClient,
    imported: Path,
    pool: asyncpg.Pool,
    ingest_store: LocalObjectStore,
) -> None:
    first, status = await ask(client, "ORBT.DEMO", "2020-01-01", END.isoformat())
    assert status == MISS
    again, status = await ask(client, "ORBT.DEMO", "2020-01-01", END.isoformat())
    assert status == HIT and again == first
    # Another stock's new data leaves it cached.
    await import_csvs(pool, ingest_store, only(imported, "SPLT.DEMO", 0.5))
    assert (await ask(client, "ORBT.DEMO", "2020-01-01", END.isoformat()))[1] == HIT
    # Its own new data (every close halved from 2024 on: a crash) is the next answer.
    await import_csvs(pool, ingest_store, only(imported, "ORBT.DEMO", 0.5))
    changed, status = await ask(client, "ORBT.DEMO", "2020-01-01", END.isoformat())
    assert status == MISS and changed != first
    history = changed["data"]["stock"]["signalHistory"]
    crash = [t for t in history["transitions"] if t["asOf"].startswith("2024-01")]
    assert crash and crash[0]["alerting"], history["transitions"]


def only(directory: Path, ticker: str, factor: float) -> Path:
    """An export of `ticker`'s bars from 2024 on, scaled by `factor` (a new data version)."""
    target = directory.parent / f"{ticker}-{factor}"
    target.mkdir(exist_ok=True)
    with (directory / "ohlcv.csv").open(newline="") as source:
        reader = csv.DictReader(source)
        rows = [r for r in reader if r["act_symbol"] == ticker and r["date"] >= "2024-01-01"]
        columns = reader.fieldnames or []
    for row in rows:
        for name in ("open", "high", "low", "close"):
            row[name] = f"{float(row[name]) * factor:.2f}"
    with (target / "ohlcv.csv").open("w", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return target


def goog_export(directory: Path) -> tuple[list[date], list[float]]:
    """GOOG's daily bars 2004-2013 as shipped in the `backtesting` wheel, as a DoltHub export."""
    source = Path(str(distribution("backtesting").locate_file("backtesting/test/GOOG.csv")))
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    directory.mkdir()
    with (directory / "ohlcv.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["date", "act_symbol", "open", "high", "low", "close", "volume"])
        for row in rows:
            writer.writerow(
                [row[""], "GOOG", row["Open"], row["High"], row["Low"], row["Close"], row["Volume"]]
            )
    return [date.fromisoformat(r[""]) for r in rows], [float(r["Close"]) for r in rows]


def raw_crossings_per_year(days: list[date], closes: list[float]) -> float:
    """Sign changes of close − SMA200, per year of the days that have an SMA."""
    sides = []
    for i in range(199, len(closes)):
        sma = math.fsum(closes[i - 199 : i + 1]) / 200
        sides.append(closes[i] >= sma)
    crossings = sum(a != b for a, b in zip(sides, sides[1:], strict=False))
    return crossings / (((days[-1] - days[199]).days + 1) / 365.25)


async def test_real_goog_prices_alert_on_the_trend_far_less_than_raw_sma_crossings(
    client: httpx.AsyncClient, pool: asyncpg.Pool, ingest_store: LocalObjectStore, tmp_path: Path
) -> None:
    days, closes = goog_export(tmp_path / "goog")
    await import_csvs(pool, ingest_store, tmp_path / "goog")
    raw = raw_crossings_per_year(days, closes)
    assert 3.8 < raw < 4.0  # the series crosses its 200-day average ~3.9 times a year
    body, _ = await ask(client, "GOOG", days[0].isoformat(), days[-1].isoformat())
    assert "errors" not in body, body
    history = body["data"]["stock"]["signalHistory"]
    assert (history["firstDay"], history["lastDay"]) == (days[0].isoformat(), "2013-03-01")
    assert history["tradingDays"] == len(days)
    trend = next(r for r in history["alertsPerYear"] if r["kind"] == "TREND_BREAK")
    # Over the days with an SMA too (the first 199 cannot have a trend): still well under.
    with_sma = trend["alerts"] / (((days[-1] - days[199]).days + 1) / 365.25)
    print(
        f"GOOG {days[0]}..{days[-1]}: raw close/SMA200 crossings {raw:.2f}/year; trend alerts "
        f"{trend['alerts']} = {trend['perYear']:.2f}/year of the window, {with_sma:.2f}/year "
        "of the days with an SMA"
    )
    assert with_sma < raw / 2
    # No fundamentals were imported: the other kinds stay UNKNOWN and never alert.
    others = [r for r in history["alertsPerYear"] if r["kind"] != "TREND_BREAK"]
    assert all(r["alerts"] == 0 for r in others)
