"""`sync-symbols`: DoltHub's `symbol` table into `entities` (the search universe, no data)."""

from __future__ import annotations

import logging

import asyncpg

from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.stocks import iter_symbols
from ingest.dolthub.values import RejectCounts
from ingest.progress import Progress
from services.settings import Settings
from services.symbols import SYMBOL_BATCH, SymbolInfo, retire_missing_symbols, upsert_symbols

log = logging.getLogger(__name__)


async def run_sync_symbols(
    settings: Settings, pool: asyncpg.Pool, client: DoltHubClient, progress: Progress
) -> Progress:
    """Keyset-page the symbol table, upsert in batches, then retire symbols no longer listed."""
    skipped = RejectCounts()
    batch: list[SymbolInfo] = []
    seen: list[str] = []
    changed = 0
    async with pool.acquire() as conn:
        async for source in iter_symbols(client, settings.dolthub_stocks_db, skipped=skipped):
            batch.append(source)
            seen.append(source.ticker)
            progress.item_done("symbols")
            if len(batch) >= SYMBOL_BATCH:
                changed += await upsert_symbols(conn, batch)
                batch = []
        changed += await upsert_symbols(conn, batch)
        # Only after a complete pass: a partial one must not shrink the universe.
        retired = await retire_missing_symbols(conn, seen) if seen else 0
    progress.add("entities changed", changed)
    progress.add("retired", retired)
    progress.add("test issues skipped", skipped.pop("test_issue", 0))
    progress.add("rows rejected", skipped.rejected)
    if skipped.rejected:
        log.warning("symbol rows rejected: %s", skipped.describe())
    return progress
