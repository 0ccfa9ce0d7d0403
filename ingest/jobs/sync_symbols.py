"""`sync-symbols`: DoltHub's `symbol` table into `entities` (the search universe, no data)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg

from ingest.dolthub.client import DoltHubClient
from ingest.dolthub.stocks import iter_symbols
from ingest.dolthub.values import RejectCounts
from ingest.progress import Progress
from services.settings import Settings
from services.symbols import (
    SYMBOL_BATCH,
    SymbolInfo,
    Upserted,
    record_sync,
    retire_missing_symbols,
    upsert_symbols,
)

log = logging.getLogger(__name__)

# Tickers named in the report line; the counts cover the rest.
NAMES_SHOWN = 10


@dataclass
class SymbolChanges:
    """Tickers that entered the universe and tickers no longer listed (retired)."""

    added: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    def report_line(self) -> str:
        """`sync-symbols: 2 new (A, B), 1 delisted (C)`."""
        return (
            f"sync-symbols: {len(self.added)} new{_names(self.added)}, "
            f"{len(self.retired)} delisted{_names(self.retired)}"
        )


def _names(tickers: list[str]) -> str:
    if not tickers:
        return ""
    more = ", …" if len(tickers) > NAMES_SHOWN else ""
    return f" ({', '.join(tickers[:NAMES_SHOWN])}{more})"


async def run_sync_symbols(
    settings: Settings, pool: asyncpg.Pool, client: DoltHubClient, progress: Progress
) -> SymbolChanges:
    """Keyset-page the symbol table, upsert in batches, then retire symbols no longer listed.

    Only a complete pass retires symbols and is recorded as the last sync.
    """
    skipped = RejectCounts()
    batch: list[SymbolInfo] = []
    seen: list[str] = []
    upserted = Upserted()
    changes = SymbolChanges()
    async with pool.acquire() as conn:
        async for source in iter_symbols(client, settings.dolthub_stocks_db, skipped=skipped):
            batch.append(source)
            seen.append(source.ticker)
            progress.item_done("symbols")
            if len(batch) >= SYMBOL_BATCH:
                _merge(upserted, await upsert_symbols(conn, batch))
                batch = []
        _merge(upserted, await upsert_symbols(conn, batch))
        changes.added = sorted(upserted.added)
        if seen:  # an empty answer is an outage, not a delisting of everything
            async with conn.transaction():
                changes.retired = await retire_missing_symbols(conn, seen)
                await record_sync(conn, len(seen), len(changes.added), len(changes.retired))
    progress.add("entities changed", upserted.changed)
    progress.add("new", len(changes.added))
    progress.add("retired", len(changes.retired))
    progress.add("test issues skipped", skipped.pop("test_issue", 0))
    progress.add("rows rejected", skipped.rejected)
    if skipped.rejected:
        log.warning("symbol rows rejected: %s", skipped.describe())
    return changes


def _merge(total: Upserted, part: Upserted) -> None:
    total.changed += part.changed
    total.added += part.added
