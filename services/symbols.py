"""The symbol universe: DoltHub's `symbol` table as searchable entities (no market data)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from services.db import Connection

SYMBOL_BATCH = 5000


@dataclass(frozen=True)
class SymbolInfo:
    """What DoltHub's `symbol` table says about a ticker."""

    ticker: str
    name: str | None = None
    exchange: str | None = None
    is_etf: bool = False
    is_test_issue: bool = False
    market_category: str | None = None
    financial_status: str | None = None
    last_seen: date | None = None


UPSERT_SYMBOLS_SQL = """
INSERT INTO entities AS e (ticker, name, exchange, is_etf, in_symbol_universe)
SELECT t, n, x, f, true
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) AS s(t, n, x, f)
ON CONFLICT (ticker) DO UPDATE SET
    name = coalesce(EXCLUDED.name, e.name),
    exchange = coalesce(EXCLUDED.exchange, e.exchange),
    is_etf = EXCLUDED.is_etf,
    in_symbol_universe = true,
    updated_at = now()
WHERE (e.name, e.exchange, e.is_etf, e.in_symbol_universe)
    IS DISTINCT FROM (coalesce(EXCLUDED.name, e.name), coalesce(EXCLUDED.exchange, e.exchange),
                      EXCLUDED.is_etf, true)
"""

RETIRE_SYMBOLS_SQL = """
UPDATE entities SET in_symbol_universe = false, updated_at = now()
WHERE in_symbol_universe AND NOT (ticker = ANY($1::text[]))
"""


async def upsert_symbols(conn: Connection, symbols: Sequence[SymbolInfo]) -> int:
    """Insert or refresh symbols in the search universe in batches; returns rows changed."""
    changed = 0
    for start in range(0, len(symbols), SYMBOL_BATCH):
        batch = symbols[start : start + SYMBOL_BATCH]
        result = await conn.execute(
            UPSERT_SYMBOLS_SQL,
            [s.ticker for s in batch],
            [s.name for s in batch],
            [s.exchange for s in batch],
            [s.is_etf for s in batch],
        )
        changed += int(result.rsplit(" ", 1)[-1])
    return changed


async def retire_missing_symbols(conn: Connection, seen: Iterable[str]) -> int:
    """Tickers no longer in the source's symbol table leave the universe; returns how many."""
    result = await conn.execute(RETIRE_SYMBOLS_SQL, sorted(set(seen)))
    return int(result.rsplit(" ", 1)[-1])
