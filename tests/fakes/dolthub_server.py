"""A real HTTP server on loopback that behaves like DoltHub's SQL API, over generated data."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.dolthub_data import OHLCV_TYPES, FakeData, TableRow
from tests.fakes.dolthub_sql import (
    DATABASE_TABLES,
    EARNINGS_DB,
    STOCKS_DB,
    FakeSqlError,
    ParsedQuery,
    parse_sql,
)

__all__ = ["EARNINGS_DB", "STOCKS_DB", "FakeDoltHub", "LoggedRequest", "Switches"]

BASE_PATH = "/api/v1alpha1"
# A page that is not an API answer: what a redirect from a hijacked or misconfigured endpoint
# might lead to. Nothing of it may reach an API client.
LEAK_PATH = "/leak"
LEAK_PAGE = b"<html><h1>Not Found</h1><pre>db_password=hunter2-from-the-leak-page\x1b[2J\n</pre>"
DATE_COLUMNS = {
    "ohlcv": "date",
    "split": "ex_date",
    "dividend": "ex_date",
    "eps_history": "period_end_date",
}
# Corruptions applied in corrupt mode, and the reject reason the client should count.
CORRUPTION_REASONS = {
    "nan_close": "non_finite",
    "negative_open": "non_positive_price",
    "zero_low": "non_positive_price",
    "missing_close": "missing_column",
    "high_below_low": "high_below_low",
    "bad_date": "bad_date",
    "garbage_volume": "bad_number",
}
CORRUPTIONS = tuple(CORRUPTION_REASONS)
EARNINGS_CORRUPTION_REASONS = {
    "nan_value": "non_finite",
    "garbage_value": "bad_number",
    "missing_value": "missing_column",
}
EARNINGS_CORRUPTIONS = tuple(EARNINGS_CORRUPTION_REASONS)
NON_VALUE_COLUMNS = {"act_symbol", "date", "period", "period_end_date"}


class FakeDeadline(Exception):
    """The query would scan too much: DoltHub's `context deadline exceeded`."""


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it (monotonic arrival time, same clock as the tests)."""

    at: float
    path: str
    sql: str | None
    authorization: str | None


@dataclass
class Switches:
    """Per-test behaviour knobs; `FakeDoltHub.reset()` restores these defaults."""

    latency_ms: float = 0.0
    row_limit: int = 1000
    deadline_days: int | None = None
    deadline_status: int = 400
    # A query over every symbol asking for more rows than this runs out of time.
    deadline_rows: int | None = None
    corrupt_every: int | None = None  # ohlcv rows, and earnings rows unless overridden below
    corrupt_earnings_every: int | None = None  # None: follow corrupt_every; 0: never
    failures: deque[tuple[int, str | None]] = field(default_factory=deque)
    redirect_to: str | None = None  # every API request answers 302 to this URL
    oversize_bytes: int | None = None  # every API request answers a chunked body this long


class FakeDoltHub:
    """The server: `.url` is a DOLTHUB_API_URL; switches are settable between requests."""

    def __init__(self, seed: int = 7) -> None:
        self.data = FakeData(seed=seed)
        self.switches = Switches()
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"

    @property
    def leak_url(self) -> str:
        """A page on this server that is not an API answer (a redirect target in tests)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{LEAK_PATH}"

    def start(self) -> FakeDoltHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Back to defaults: no latency, no failures, no corruption, empty log, every symbol."""
        with self._lock:
            self.switches = Switches()
            self.log = []
            self.data.unknown = {"NODATA", "ZZZZ"}
            self.data.delisted = set()
            self.data.absent = set()
            self.data.extra_splits = {}
            self.data.extra_dividends = {}
            self.data.synthetic_symbols = FakeData.synthetic_symbols

    def forget_requests(self) -> None:
        """Empty the request log only (switches and data stay as the test set them)."""
        with self._lock:
            self.log = []

    # -- switches -------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 429, retry_after: str | None = None) -> None:
        """The next `n` requests answer `status` (with a Retry-After header when given)."""
        with self._lock:
            self.switches.failures.extend([(status, retry_after)] * n)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self.log)

    def request_times(self) -> list[float]:
        return [r.at for r in self.requests]

    # -- ground truth for assertions ------------------------------------------------------
    def corruption_of(self, ticker: str, day: str) -> str | None:
        every = self.switches.corrupt_every
        if not every:
            return None
        digest = zlib.crc32(f"{ticker}|{day}".encode())
        if digest % every:
            return None
        return CORRUPTIONS[(digest // every) % len(CORRUPTIONS)]

    def expected_rejects(self, ticker: str, start: date, end: date) -> Counter[str]:
        """Reject reasons the client should count for ohlcv rows in [start, end]."""
        counts: Counter[str] = Counter()
        for row in self.data.ohlcv(ticker):
            kind = self.corruption_of(ticker, row["date"] or "")
            if kind and start.isoformat() <= (row["date"] or "") <= end.isoformat():
                counts[CORRUPTION_REASONS[kind]] += 1
        return counts

    def earnings_corruption_of(self, table: str, ticker: str, day: str) -> str | None:
        own = self.switches.corrupt_earnings_every
        every = self.switches.corrupt_every if own is None else own
        if not every:
            return None
        digest = zlib.crc32(f"{table}|{ticker}|{day}".encode())
        if digest % every:
            return None
        return EARNINGS_CORRUPTIONS[(digest // every) % len(EARNINGS_CORRUPTIONS)]

    def expected_earnings_rejects(self, ticker: str) -> Counter[str]:
        """'<table>.<reason>' counts the client should report for the ticker's quarterly rows."""
        counts: Counter[str] = Counter()
        for table in sorted(DATABASE_TABLES[EARNINGS_DB]):
            column = DATE_COLUMNS.get(table, "date")
            for row in self.data.earnings(ticker, table):
                if row.get("period", "Quarter") != "Quarter":
                    continue
                kind = self.earnings_corruption_of(table, ticker, row[column] or "")
                if kind:
                    counts[f"{table}.{EARNINGS_CORRUPTION_REASONS[kind]}"] += 1
        return counts

    # -- request handling -----------------------------------------------------------------
    def handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        sql = parse_qs(parts.query).get("q", [None])[0]
        with self._lock:
            self.log.append(
                LoggedRequest(
                    time.monotonic(), parts.path, sql, handler.headers.get("authorization")
                )
            )
            switches = self.switches
            failure = switches.failures.popleft() if switches.failures else None
        if parts.path == LEAK_PATH:
            handler.reply(404, LEAK_PAGE, "text/html")
            return
        if switches.latency_ms:
            time.sleep(switches.latency_ms / 1000)
        if switches.redirect_to is not None:
            handler.reply(302, b"", "text/plain", {"location": switches.redirect_to})
            return
        if switches.oversize_bytes is not None:
            handler.reply_chunked(200, b'{"rows": ["' + b"x" * switches.oversize_bytes)
            return
        if failure is not None:
            status, retry_after = failure
            headers = {"retry-after": retry_after} if retry_after else {}
            handler.reply(status, b"upstream says no", "text/plain", headers)
            return
        status, payload = self.answer(unquote(parts.path), sql)
        handler.reply(status, json.dumps(payload).encode(), "application/json")

    def answer(self, path: str, sql: str | None) -> tuple[int, dict[str, object]]:
        if not path.startswith(BASE_PATH + "/"):
            return 404, {"message": "not found"}
        segments = path[len(BASE_PATH) + 1 :].split("/")
        if len(segments) != 3:
            return 404, {"message": "not found"}
        owner, name, branch = segments
        envelope: dict[str, object] = {
            "repository_owner": owner,
            "repository_name": name,
            "commit_ref": branch,
            "sql_query": sql or "",
        }
        db = f"{owner}/{name}"
        if db not in DATABASE_TABLES or branch != "master":
            return 404, _error(envelope, f"could not find database {db} at {branch}")
        if not sql:
            return 400, _error(envelope, "query must be provided in the q parameter")
        try:
            query = parse_sql(sql)
            if query.table not in DATABASE_TABLES[db]:
                raise FakeSqlError(f"table not found: {query.table}")
            rows, truncated = self.execute(query)
        except FakeSqlError as exc:
            return 400, _error(envelope, str(exc))
        except FakeDeadline:
            message = "query error: rpc error: context deadline exceeded"
            return self.switches.deadline_status, _error(envelope, message)
        return 200, self.render(envelope, query, rows, truncated)

    def execute(self, query: ParsedQuery) -> tuple[list[TableRow], bool]:
        self._check_deadline(query)
        self._check_row_deadline(query)
        rows = [r for r in self._table(query) if all(c.matches(r) for c in query.conditions)]
        if query.order_by:
            keys = query.order_by
            rows.sort(key=lambda r: [(r.get(k) is not None, r.get(k) or "") for k in keys])
            if query.descending:
                rows.reverse()
        if query.limit is not None:
            rows = rows[: query.limit]
        limit = self.switches.row_limit
        return rows[:limit], len(rows) > limit

    def _table(self, query: ParsedQuery) -> list[TableRow]:
        if query.table == "symbol":
            return self.data.symbols()
        tickers = [c.value for c in query.conditions if c.column == "act_symbol" and c.op == "="]
        if not tickers:
            return self._all_symbols(query)
        if query.table == "ohlcv":
            return self.data.ohlcv(tickers[0])
        if query.table == "split":
            return self.data.split_rows(tickers[0])
        if query.table == "dividend":
            return self.data.dividend_rows(tickers[0])
        return self.data.earnings(tickers[0], query.table)

    def _all_symbols(self, query: ParsedQuery) -> list[TableRow]:
        """Every symbol's rows from a lower date bound on: ohlcv's key starts with the date."""
        column = DATE_COLUMNS.get(query.table, "date")
        lower = [
            c.value for c in query.conditions if c.column == column and c.op in (">=", ">", "=")
        ]
        # Without a lower bound it is a scan of every symbol's history: DoltHub times out.
        if not lower:
            raise FakeDeadline
        if query.table == "ohlcv":
            return self.data.ohlcv_from(max(lower))
        if query.table == "split":
            return self.data.split_rows_from(max(lower))
        if query.table == "dividend":
            return self.data.dividend_rows_from(max(lower))
        return self.data.earnings_from(query.table, max(lower))

    def _check_row_deadline(self, query: ParsedQuery) -> None:
        rows = self.switches.deadline_rows
        if rows is None or query.table == "symbol":
            return
        if any(c.column == "act_symbol" and c.op == "=" for c in query.conditions):
            return
        if query.limit is None or query.limit > rows:
            raise FakeDeadline

    def _check_deadline(self, query: ParsedQuery) -> None:
        limit_days = self.switches.deadline_days
        if limit_days is None or query.table == "symbol":
            return
        column = DATE_COLUMNS.get(query.table, "date")
        lower = [
            c.value for c in query.conditions if c.column == column and c.op in (">=", ">", "=")
        ]
        upper = [
            c.value for c in query.conditions if c.column == column and c.op in ("<", "<=", "=")
        ]
        if not lower or not upper:
            raise FakeDeadline
        span = date.fromisoformat(min(upper)[:10]) - date.fromisoformat(max(lower)[:10])
        if span.days > limit_days:
            raise FakeDeadline

    def render(
        self, envelope: dict[str, object], query: ParsedQuery, rows: list[TableRow], truncated: bool
    ) -> dict[str, object]:
        shuffle = random.Random(len(self.log))
        out = []
        for row in rows:
            cells = {c: row.get(c) for c in query.columns}
            if query.table == "ohlcv":
                cells = self._corrupt(row, cells)
            elif query.table in DATABASE_TABLES[EARNINGS_DB]:
                cells = self._corrupt_earnings(query.table, row, cells)
            keys = list(cells)
            shuffle.shuffle(keys)
            out.append({k: cells[k] for k in keys})
        schema = [
            {"columnName": c, "columnType": _column_type(query.table, c)} for c in query.columns
        ]
        shuffle.shuffle(schema)
        return {
            **envelope,
            "query_execution_status": "RowLimit" if truncated else "Success",
            "query_execution_message": "",
            "schema": schema,
            "rows": out,
        }

    def _corrupt(self, row: TableRow, cells: TableRow) -> TableRow:
        kind = self.corruption_of(row["act_symbol"] or "", row["date"] or "")
        if kind is None:
            return cells
        cells = dict(cells)
        if kind == "nan_close":
            cells["close"] = "NaN"
        elif kind == "negative_open":
            cells["open"] = "-" + (row["open"] or "1")
        elif kind == "zero_low":
            cells["low"] = "0.0000"
        elif kind == "missing_close":
            cells.pop("close", None)
        elif kind == "high_below_low":
            cells["high"], cells["low"] = row["low"], row["high"]
        elif kind == "bad_date":
            cells["date"] = (row["date"] or "")[:8] + "00"
        elif kind == "garbage_volume":
            cells["volume"] = "12abc"
        return cells

    def _corrupt_earnings(self, table: str, row: TableRow, cells: TableRow) -> TableRow:
        day = row.get(DATE_COLUMNS.get(table, "date")) or ""
        kind = self.earnings_corruption_of(table, row["act_symbol"] or "", day)
        values = [c for c in cells if c not in NON_VALUE_COLUMNS]
        if kind is None or not values:
            return cells
        cells = dict(cells)
        if kind == "nan_value":
            cells[values[-1]] = "NaN"
        elif kind == "garbage_value":
            cells[values[-1]] = "1,234"
        else:
            cells.pop(values[-1])
        return cells


def _column_type(table: str, column: str) -> str:
    if column in ("date", "ex_date", "period_end_date", "last_seen"):
        return "date"
    if column in ("act_symbol", "period", "security_name", "listing_exchange"):
        return "varchar(64)"
    if column == "amount":
        return "decimal(10,5)"
    return OHLCV_TYPES.get(column, "decimal(20,4)")


def _error(envelope: dict[str, object], message: str) -> dict[str, object]:
    return {
        **envelope,
        "query_execution_status": "Error",
        "query_execution_message": message,
        "schema": None,
        "rows": None,
    }


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when a client went away (timeout and outage tests hang up on purpose)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_GET(self) -> None:
        self.server.fake.handle(self)  # type: ignore[attr-defined]

    def reply(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_chunked(self, status: int, body: bytes, chunk: int = 65536) -> None:
        """A body with no length given up front: the client finds its size only by reading."""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), chunk):
            part = body[start : start + chunk]
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read `FakeDoltHub.requests` instead."""
