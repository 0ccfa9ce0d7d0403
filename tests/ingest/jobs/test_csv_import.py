"""import-csv: DoltHub-shaped table exports → objects and entity metadata; bad rows counted."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import asyncpg

from services.market.records import Dividend
from services.storage.local import LocalObjectStore
from services.storage.market_files import (
    read_dividends,
    read_fundamentals,
    read_prices,
    read_splits,
)
from tests.fakes.dolthub_data import TableRow
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fakes.dolthub_sql import TABLE_COLUMNS
from tests.fixtures.ingest import missing_month_objects, run_ingest

EARNINGS_TABLES = (
    "income_statement",
    "balance_sheet_assets",
    "balance_sheet_liabilities",
    "balance_sheet_equity",
    "eps_history",
)
BAD_PRICE_ROWS = [
    ["2020-01-02", "AAPL", "10.0", "11.0", "9.0", "NaN", "100"],
    ["2020-01-02", "KO", "-1.0", "11.0", "9.0", "10.0", "100"],
    ["2020-01-03", "KO", "10.0", "11.0", "9.0", "", "100"],
    ["2020-01-03", "KO", "10.0", "11.0"],
    ["2020-01-06", "bad ticker!", "10.0", "11.0", "9.0", "10.0", "100"],
    ["2020-02-30", "AAPL", "10.0", "11.0", "9.0", "10.0", "100"],
]


def write_csv(path: Path, columns: tuple[str, ...], rows: list[TableRow]) -> None:
    """Like `dolt table export`: a header, NULL as an empty field."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


def export(fake: FakeDoltHub, directory: Path, tickers: list[str]) -> Path:
    directory.mkdir()
    ohlcv = TABLE_COLUMNS["ohlcv"]
    write_csv(directory / "ohlcv.csv", ohlcv, [r for t in tickers for r in fake.data.ohlcv(t)])
    with (directory / "ohlcv.csv").open("a", newline="") as handle:
        csv.writer(handle).writerows(BAD_PRICE_ROWS)
    symbols = [r for r in fake.data.symbols() if r["act_symbol"] in {*tickers, "ZVZZT"}]
    write_csv(directory / "symbol.csv", TABLE_COLUMNS["symbol"], symbols)
    split_rows = [r for t in tickers for r in fake.data.split_rows(t)]
    write_csv(directory / "split.csv", TABLE_COLUMNS["split"], split_rows)
    dividend_rows = [r for t in tickers for r in fake.data.dividend_rows(t)]
    write_csv(directory / "dividend.csv", TABLE_COLUMNS["dividend"], dividend_rows)
    for table in EARNINGS_TABLES:
        rows = [r for t in tickers for r in fake.data.earnings(t, table)]
        write_csv(directory / f"{table}.csv", TABLE_COLUMNS[table], rows)
    return directory


async def test_import_csv_writes_objects_then_entities_and_counts_bad_rows(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
) -> None:
    tickers = ["AAPL", "KO"]
    directory = export(fake_dolthub, tmp_path / "export", tickers)
    result = await run_ingest(["import-csv", str(directory)], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("import-csv: 2 tickers, 0 failed"), result.stdout
    assert f"{len(BAD_PRICE_ROWS)} rows rejected" in result.stdout
    assert "1 test issues skipped" in result.stdout
    assert fake_dolthub.requests == []  # offline: the source is never asked
    for ticker in tickers:
        source = fake_dolthub.data.ohlcv(ticker)
        days = [date.fromisoformat(r["date"] or "") for r in source]
        stored = await read_prices(ingest_store, ticker)
        assert stored.dates == days
        assert stored.closes == [float(r["close"] or "nan") for r in source]
        row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = $1", ticker)
        assert row is not None and row["data_status"] == "ready" and row["has_price_data"]
        assert (row["price_data_min_date"], row["price_data_max_date"]) == (days[0], days[-1])
        assert await missing_month_objects(ingest_store, ticker, days[0], days[-1]) == []
        assert row["name"] == "Apple Inc. - Common Stock" if ticker == "AAPL" else row["name"]
        quarters = await read_fundamentals(ingest_store, ticker)
        income = [
            r
            for r in fake_dolthub.data.earnings(ticker, "income_statement")
            if r["period"] == "Quarter"
        ]
        assert [q.period_end_date.isoformat() for q in quarters] == [r["date"] for r in income]
        assert row["has_fundamental_data"]
        assert row["fundamental_data_max_date"] == quarters[-1].period_end_date
        splits = await read_splits(ingest_store, ticker)
        assert [s.ex_date for s in splits] == [s.ex_date for s in fake_dolthub.data.splits(ticker)]
        # AAPL has no dividend row: the export is the whole table, so it pays none ([]), which
        # is not "never fetched" (None).
        assert await read_dividends(ingest_store, ticker) == [
            Dividend(date.fromisoformat(r["ex_date"] or ""), float(r["amount"] or "nan"))
            for r in fake_dolthub.data.dividend_rows(ticker)
        ]
    assert await read_dividends(ingest_store, "AAPL") == []
    assert len(await read_dividends(ingest_store, "KO") or []) > 10
    assert not await pool.fetchval("SELECT count(*) FROM entities WHERE ticker = 'ZVZZT'")

    keys = await ingest_store.list("")
    before = {k: await ingest_store.get(k) for k in keys}
    again = await run_ingest(["import-csv", str(directory)], ingest_env)
    assert again.code == 0, again.stderr
    assert await ingest_store.list("") == keys
    assert await ingest_store.get_many(keys) == before  # idempotent: same bytes


async def test_a_bad_file_fails_alone(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
) -> None:
    directory = export(fake_dolthub, tmp_path / "export", ["KO"])
    (directory / "ohlcv.csv").write_text("date,act_symbol,open,high,low,volume\n")
    result = await run_ingest(["import-csv", str(directory)], ingest_env)
    assert result.code == 1
    assert "1 failed" in result.stdout
    assert "ohlcv.csv: missing column(s) close" in result.stdout
    row = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'KO'")
    assert row is not None and not row["has_price_data"] and row["has_fundamental_data"]
    assert row["data_status"] == "none"
    assert await ingest_store.list("prices/") == []


async def test_import_csv_argument_errors(ingest_env: dict[str, str], tmp_path: Path) -> None:
    missing = await run_ingest(["import-csv", str(tmp_path / "nope")], ingest_env)
    assert missing.code == 1
    assert missing.stderr == f"error: import-csv: {tmp_path / 'nope'} is not a directory\n"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "prices.csv").write_text("x\n")
    empty = await run_ingest(["import-csv", str(tmp_path / "empty")], ingest_env)
    assert empty.code == 1 and empty.stderr.startswith("error: import-csv: no DoltHub exports")
    assert len(empty.stderr.splitlines()) == 1
    no_dir = await run_ingest(["import-csv"], ingest_env)
    assert no_dir.code == 2
    assert no_dir.stderr.startswith("error: the following arguments are required: DIR")


async def test_without_dividend_csv_dividends_stay_never_fetched(
    pool: asyncpg.Pool,
    ingest_env: dict[str, str],
    ingest_store: LocalObjectStore,
    fake_dolthub: FakeDoltHub,
    tmp_path: Path,
) -> None:
    directory = export(fake_dolthub, tmp_path / "export", ["KO"])
    (directory / "dividend.csv").unlink()
    result = await run_ingest(["import-csv", str(directory)], ingest_env)
    assert result.code == 0, result.stderr
    assert await read_prices(ingest_store, "KO")
    assert await read_dividends(ingest_store, "KO") is None
