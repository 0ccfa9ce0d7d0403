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


async def daily_symbols_line(ingest_env: dict[str, str], **env: str) -> list[str]:
    """Run `daily` (nothing else to do) and return its sync-symbols output lines."""
    result = await run_ingest(["daily"], ingest_env, **env)
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("daily: all steps succeeded")
    return [line for line in result.stdout.splitlines() if line.startswith("sync-symbols: ")]


def symbol_requests(fake: FakeDoltHub) -> int:
    return sum(1 for r in fake.requests if r.sql and "FROM `symbol`" in r.sql)


async def test_daily_syncs_symbols_when_the_last_sync_is_older_than_the_max_age(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    listed = [r for r in fake_dolthub.data.symbols() if r["is_test_issue"] == "0"]
    # A new deployment: the first daily run fills the search universe.
    (first, new_line) = await daily_symbols_line(ingest_env)
    assert first.startswith(f"sync-symbols: {len(listed)} symbols, 0 failed")
    assert f"{len(listed)} new" in first
    assert new_line.startswith(f"sync-symbols: {len(listed)} new (AAPL, ")
    assert new_line.endswith(", …), 0 delisted")
    assert await pool.fetchval("SELECT count(*) FROM entities WHERE in_symbol_universe") == len(
        listed
    )
    synced = await pool.fetchrow("SELECT * FROM symbol_syncs")
    assert synced is not None
    assert (synced["symbols"], synced["added"], synced["retired"]) == (len(listed), len(listed), 0)

    # Within SYMBOLS_MAX_AGE_DAYS (7 by default): skipped without asking DoltHub.
    fake_dolthub.log.clear()
    (skipped,) = await daily_symbols_line(ingest_env)
    assert skipped.startswith("sync-symbols: skipped; last complete sync ")
    assert skipped.endswith("UTC is within SYMBOLS_MAX_AGE_DAYS=7")
    assert symbol_requests(fake_dolthub) == 0
    assert await pool.fetchval("SELECT count(*) FROM symbol_syncs") == 1

    # Eight days later the source lists one more symbol and dropped one.
    await pool.execute("UPDATE symbol_syncs SET finished_at = now() - interval '8 days'")
    fake_dolthub.data.synthetic_symbols += 1  # S1200
    fake_dolthub.data.delisted = {"S0005"}
    (again, changes) = await daily_symbols_line(ingest_env)
    assert "1 new, 1 retired" in again, again
    assert changes == "sync-symbols: 1 new (S1200), 1 delisted (S0005)"
    universe = await pool.fetch(
        "SELECT ticker, in_symbol_universe FROM entities WHERE ticker IN ('S1200', 'S0005')"
    )
    assert {r["ticker"]: r["in_symbol_universe"] for r in universe} == {
        "S1200": True,
        "S0005": False,
    }
    latest = await pool.fetchrow("SELECT * FROM symbol_syncs ORDER BY finished_at DESC LIMIT 1")
    assert latest is not None and (latest["added"], latest["retired"]) == (1, 1)
    assert latest["finished_at"] > synced["finished_at"]

    # SYMBOLS_MAX_AGE_DAYS=0 refreshes on every run.
    fake_dolthub.log.clear()
    (every,) = await daily_symbols_line(ingest_env, SYMBOLS_MAX_AGE_DAYS="0")
    assert every.startswith(f"sync-symbols: {len(listed)} symbols, 0 failed"), every
    assert symbol_requests(fake_dolthub) > 0
    assert await pool.fetchval("SELECT count(*) FROM symbol_syncs") == 3


async def test_a_failed_sync_is_not_recorded_so_daily_tries_again(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    fake_dolthub.fail_next(1, status=400)
    result = await run_ingest(["sync-symbols"], ingest_env)
    assert result.code == 1
    assert await pool.fetchval("SELECT count(*) FROM symbol_syncs") == 0
    (line, _) = await daily_symbols_line(ingest_env)
    assert not line.startswith("sync-symbols: skipped"), line
    assert await pool.fetchval("SELECT count(*) FROM symbol_syncs") == 1
