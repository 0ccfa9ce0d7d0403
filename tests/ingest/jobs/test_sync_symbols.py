"""sync-symbols: DoltHub's symbol table becomes the search universe (test issues skipped)."""

from __future__ import annotations

import asyncpg

from tests.fakes.dolthub_data import TEST_ISSUES
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import run_ingest


async def test_sync_symbols_loads_the_universe(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    await pool.execute(
        "INSERT INTO entities (ticker, in_symbol_universe) VALUES ('OLDCO', true), ('MINE', false)"
    )
    await pool.execute(
        "INSERT INTO entities (ticker, has_price_data, data_status) VALUES ('AAPL', true, 'ready')"
    )
    source = [r for r in fake_dolthub.data.symbols() if r["is_test_issue"] == "0"]
    result = await run_ingest(["sync-symbols"], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"sync-symbols: {len(source)} symbols, 0 failed")
    assert f"{len(TEST_ISSUES)} test issues skipped" in result.stdout
    assert "1 retired" in result.stdout
    universe = await pool.fetch(
        "SELECT ticker, name, exchange, is_etf FROM entities WHERE in_symbol_universe"
    )
    assert sorted(r["ticker"] for r in universe) == sorted(str(r["act_symbol"]) for r in source)
    by_ticker = {r["ticker"]: r for r in universe}
    assert not set(TEST_ISSUES) & set(by_ticker)
    assert by_ticker["SPY"]["is_etf"] and by_ticker["SPY"]["exchange"] == "NYSE Arca"
    assert by_ticker["MSFT"]["name"] == "Microsoft Corporation - Common Stock"
    assert not by_ticker["MSFT"]["is_etf"]
    aapl = await pool.fetchrow("SELECT * FROM entities WHERE ticker = 'AAPL'")
    assert aapl is not None and aapl["has_price_data"] and aapl["data_status"] == "ready"
    assert aapl["name"] == "Apple Inc. - Common Stock"  # market data kept, facts added
    outside = await pool.fetch("SELECT ticker FROM entities WHERE NOT in_symbol_universe")
    assert sorted(r["ticker"] for r in outside) == ["MINE", "OLDCO"]
    # Keyset paging: bounded pages, each after the last symbol of the previous one.
    pages = [r.sql or "" for r in fake_dolthub.requests]
    assert len(pages) == len(fake_dolthub.data.symbols()) // 500 + 1
    assert all("LIMIT 500" in sql for sql in pages)
    assert all("`act_symbol` >" in sql for sql in pages[1:])

    again = await run_ingest(["sync-symbols"], ingest_env)
    assert again.code == 0 and "0 entities changed" in again.stdout, again.stdout


async def test_sync_symbols_source_failure_is_one_line_and_keeps_the_universe(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    await pool.execute("INSERT INTO entities (ticker, in_symbol_universe) VALUES ('KEEP', true)")
    fake_dolthub.fail_next(1, status=400)
    result = await run_ingest(["sync-symbols"], ingest_env)
    assert result.code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: DoltHub")
    assert "Traceback" not in result.stderr
    assert await pool.fetchval("SELECT in_symbol_universe FROM entities WHERE ticker = 'KEEP'")
