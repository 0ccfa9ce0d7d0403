"""`import-csv DIR`: DoltHub table exports through the backfill write path (objects, then rows)."""

from __future__ import annotations

import asyncio
import csv
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import asyncpg

from ingest.dolthub.earnings import (
    INCOME,
    TABLES,
    EarningsTable,
    Values,
    join_quarter,
    rows_by_period_end,
)
from ingest.dolthub.paging import dedupe_sorted
from ingest.dolthub.stocks import (
    parse_dividend_row,
    parse_price_row,
    parse_split_row,
    parse_symbol_row,
)
from ingest.dolthub.values import InvalidValue, RejectCounts, SourceRow, validate_rows
from ingest.progress import Progress
from services.data_coverage import DataWritten, record_written
from services.errors import BadUserInput, ServiceError
from services.market.records import PriceBar
from services.market_data_writes import TickerData, rebuild_history, write_objects
from services.storage.object_store import ObjectStore
from services.symbols import SymbolInfo, upsert_symbols
from services.tickers import normalize_ticker

log = logging.getLogger(__name__)

PRICE_FILE, SYMBOL_FILE, SPLIT_FILE = "ohlcv.csv", "symbol.csv", "split.csv"
DIVIDEND_FILE = "dividend.csv"
EARNINGS_FILES = {f"{table.name}.csv": table for table in TABLES}
KNOWN_FILES = (PRICE_FILE, SYMBOL_FILE, *EARNINGS_FILES, SPLIT_FILE, DIVIDEND_FILE)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    PRICE_FILE: ("date", "act_symbol", "open", "high", "low", "close", "volume"),
    SYMBOL_FILE: ("act_symbol",),
    SPLIT_FILE: ("act_symbol", "ex_date", "to_factor", "for_factor"),
    DIVIDEND_FILE: ("act_symbol", "ex_date", "amount"),
    **{
        name: ("act_symbol", table.date_column, *(("period",) if table.quarterly_only else ()))
        for name, table in EARNINGS_FILES.items()
    },
}
# Price rows held before they are merged into month objects: bounds memory on huge exports.
PRICE_FLUSH_ROWS = 200_000
WRITE_CONCURRENCY = 4


class CsvFileError(ServiceError):
    """A whole file is unusable (no header, missing columns)."""

    code = "BAD_USER_INPUT"


FILE_ERRORS = (CsvFileError, UnicodeDecodeError, csv.Error)


def find_csv_files(directory: Path) -> dict[str, Path]:
    """The known exports present in `directory`; BadUserInput when there are none."""
    if not directory.is_dir():
        raise BadUserInput(f"import-csv: {directory} is not a directory")
    files = {name: directory / name for name in KNOWN_FILES if (directory / name).is_file()}
    if not files:
        raise BadUserInput(
            f"import-csv: no DoltHub exports in {directory}; "
            f"expected any of {', '.join(KNOWN_FILES)}"
        )
    return files


def read_rows(path: Path, counts: RejectCounts) -> Iterator[SourceRow]:
    """Rows as DoltHub-API-shaped dicts: empty fields are NULL; ragged lines are rejected."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS[path.name] if c not in header]
        if missing:
            raise CsvFileError(f"{path.name}: missing column(s) {', '.join(missing)}")
        for raw in reader:
            if None in raw or any(v is None for v in raw.values()):
                counts["wrong_field_count"] += 1
                continue
            yield {k: (v if v != "" else None) for k, v in raw.items()}


def ticker_of(row: SourceRow) -> str:
    try:
        return normalize_ticker(row.get("act_symbol") or "")
    except BadUserInput:
        raise InvalidValue("bad_ticker", str(row.get("act_symbol"))) from None


def rows_by_ticker(path: Path, counts: RejectCounts) -> dict[str, list[SourceRow]]:
    """A table's rows grouped by normalized ticker; a row with a bad ticker is counted, not kept."""
    by_ticker: dict[str, list[SourceRow]] = defaultdict(list)
    for row in read_rows(path, counts):
        try:
            by_ticker[ticker_of(row)].append(row)
        except InvalidValue as exc:
            counts[exc.reason] += 1
    return by_ticker


@dataclass
class ImportState:
    """Per-ticker results accumulated across files and flushes."""

    symbols: dict[str, SymbolInfo] = field(default_factory=dict)
    price_range: dict[str, tuple[date, date]] = field(default_factory=dict)
    fundamental_range: dict[str, tuple[date, date]] = field(default_factory=dict)
    tickers: set[str] = field(default_factory=set)
    # Tickers with objects written: their history objects are rebuilt once, at the end.
    written: set[str] = field(default_factory=set)

    def widen(self, ranges: dict[str, tuple[date, date]], ticker: str, days: list[date]) -> None:
        if not days:
            return
        low, high = min(days), max(days)
        if ticker in ranges:
            low, high = min(low, ranges[ticker][0]), max(high, ranges[ticker][1])
        ranges[ticker] = (low, high)
        self.tickers.add(ticker)


class CsvImport:
    """One import run: each file validated row by row, objects written, then entity rows."""

    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, progress: Progress) -> None:
        self.pool = pool
        self.store = store
        self.progress = progress
        self.state = ImportState()
        self.gate = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def write(self, data: TickerData) -> None:
        """The ticker's objects, without its history: a ticker is written once per file and
        flush, and rewriting the whole history each time would cost the square of its length."""
        await write_objects(self.pool, self.store, data, history=False)
        self.state.written.add(data.ticker)

    async def rebuild_histories(self) -> None:
        """One history object per written ticker, from its partitions."""

        async def one(ticker: str) -> None:
            async with self.gate:
                await rebuild_history(self.pool, self.store, ticker)

        await asyncio.gather(*(one(t) for t in sorted(self.state.written)))

    def rejected(self, file: str, counts: RejectCounts) -> None:
        self.progress.add("rows rejected", counts.rejected)
        if counts.rejected:
            log.warning("%s: %s", file, counts.describe())

    async def import_symbols(self, path: Path) -> None:
        counts = RejectCounts()
        infos = []
        for row in read_rows(path, counts):
            source = parse_symbol_row(row, counts)
            if source is None:
                continue
            if source.is_test_issue:
                self.progress.add("test issues skipped")
                continue
            infos.append(source)
            self.state.symbols[source.ticker] = source
        async with self.pool.acquire() as conn:
            await upsert_symbols(conn, infos)
        self.progress.add("symbols", len(infos))
        self.rejected(path.name, counts)

    async def import_earnings(self, files: dict[str, Path]) -> None:
        counts = RejectCounts()
        per_table: dict[str, dict[str, dict[date, Values]]] = {}
        for name, table in EARNINGS_FILES.items():
            if name in files:
                try:
                    per_table[table.name] = self._parse_earnings(files[name], table, counts)
                except FILE_ERRORS as exc:
                    self.progress.item_failed(name, str(exc))
        tickers = set().union(*(set(v) for v in per_table.values())) if per_table else set()
        for ticker in sorted(tickers):
            tables = {t.name: per_table.get(t.name, {}).get(ticker, {}) for t in TABLES}
            ends = sorted(set(tables[INCOME.name]) | set(tables["eps_history"]))
            quarters = [join_quarter(d, *(tables[t.name].get(d) for t in TABLES)) for d in ends]
            if quarters:
                async with self.gate:
                    await self.write(TickerData(ticker, quarters=quarters))
                self.state.widen(self.state.fundamental_range, ticker, ends)
                self.progress.add("quarters written", len(quarters))
        self.rejected("earnings files", counts)

    def _parse_earnings(
        self, path: Path, table: EarningsTable, counts: RejectCounts
    ) -> dict[str, dict[date, Values]]:
        by_ticker: dict[str, list[SourceRow]] = defaultdict(list)
        for row in read_rows(path, counts):
            if table.quarterly_only and row.get("period") != "Quarter":
                continue  # annual rows are not used: the evaluation is quarterly
            try:
                by_ticker[ticker_of(row)].append(row)
            except InvalidValue as exc:
                counts[f"{table.name}.{exc.reason}"] += 1
        return {t: rows_by_period_end(table, rows, counts) for t, rows in by_ticker.items()}

    async def import_splits(self, path: Path) -> None:
        counts = RejectCounts()
        for ticker, rows in sorted(rows_by_ticker(path, counts).items()):
            splits, _ = validate_rows(rows, parse_split_row, counts)
            splits = dedupe_sorted(splits, lambda s: s.ex_date, counts)
            await self.write(TickerData(ticker, splits=splits))
            self.progress.add("splits written", len(splits))
        self.rejected(path.name, counts)

    async def import_dividends(self, path: Path) -> None:
        """The file is the whole `dividend` table: a ticker priced here without a row in it
        pays none (stored as fetched and empty), rather than "never fetched"."""
        counts = RejectCounts()
        by_ticker = rows_by_ticker(path, counts)
        for ticker in self.state.price_range:
            by_ticker.setdefault(ticker, [])

        async def one(ticker: str, rows: list[SourceRow]) -> None:
            dividends, _ = validate_rows(rows, parse_dividend_row, counts)
            dividends = dedupe_sorted(dividends, lambda d: d.ex_date, counts)
            async with self.gate:
                await self.write(TickerData(ticker, dividends=dividends))
            self.progress.add("dividends written", len(dividends))

        await asyncio.gather(*(one(t, rows) for t, rows in sorted(by_ticker.items())))
        self.rejected(path.name, counts)

    async def import_prices(self, path: Path) -> None:
        counts = RejectCounts()
        pending: dict[str, list[SourceRow]] = defaultdict(list)
        held = 0
        for row in read_rows(path, counts):
            try:
                pending[ticker_of(row)].append(row)
            except InvalidValue as exc:
                counts[exc.reason] += 1
                continue
            held += 1
            if held >= PRICE_FLUSH_ROWS:
                await self._flush_prices(pending, counts)
                pending, held = defaultdict(list), 0
        await self._flush_prices(pending, counts)
        self.rejected(path.name, counts)

    async def _flush_prices(
        self, pending: dict[str, list[SourceRow]], counts: RejectCounts
    ) -> None:
        async def one(ticker: str, rows: list[SourceRow]) -> None:
            bars: list[PriceBar]
            bars, _ = validate_rows(rows, parse_price_row, counts)
            bars = dedupe_sorted(bars, lambda b: b.date, counts)
            if not bars:
                return
            async with self.gate:
                await self.write(TickerData(ticker, bars=bars))
            self.state.widen(self.state.price_range, ticker, [bars[0].date, bars[-1].date])
            self.progress.add("bars written", len(bars))

        await asyncio.gather(*(one(t, rows) for t, rows in pending.items()))

    async def record_entities(self) -> None:
        """Every object is written: now flip entity metadata, all tickers in one transaction."""
        state = self.state
        async with self.pool.acquire() as conn, conn.transaction():
            for ticker in sorted(state.tickers):
                prices = state.price_range.get(ticker)
                fundamentals = state.fundamental_range.get(ticker)
                await record_written(
                    conn,
                    DataWritten(
                        ticker=ticker,
                        price_min=prices[0] if prices else None,
                        price_max=prices[1] if prices else None,
                        fundamental_min=fundamentals[0] if fundamentals else None,
                        fundamental_max=fundamentals[1] if fundamentals else None,
                        symbol=state.symbols.get(ticker),
                    ),
                )
                self.progress.item_done("tickers")


async def run_import_csv(
    pool: asyncpg.Pool, store: ObjectStore, files: dict[str, Path], progress: Progress
) -> Progress:
    """Import whichever exports are present; a bad file fails alone, the others still load."""
    job = CsvImport(pool, store, progress)
    if SYMBOL_FILE in files:
        await _guarded(progress, SYMBOL_FILE, job.import_symbols(files[SYMBOL_FILE]))
    if SPLIT_FILE in files:
        await _guarded(progress, SPLIT_FILE, job.import_splits(files[SPLIT_FILE]))
    if any(name in files for name in EARNINGS_FILES):
        await job.import_earnings(files)
    if PRICE_FILE in files:
        await _guarded(progress, PRICE_FILE, job.import_prices(files[PRICE_FILE]))
    if DIVIDEND_FILE in files:
        # After the prices: which tickers the import prices decides who pays none.
        await _guarded(progress, DIVIDEND_FILE, job.import_dividends(files[DIVIDEND_FILE]))
    await job.rebuild_histories()
    await job.record_entities()
    return progress


async def _guarded(progress: Progress, name: str, step: Awaitable[None]) -> bool:
    """Run one file's import; a file-level problem is reported as that file's failure."""
    try:
        await step
    except FILE_ERRORS as exc:
        progress.item_failed(name, str(exc))
        return False
    return True
