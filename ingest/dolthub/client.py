"""Async client for DoltHub's SQL API: pacing, retries with jitter, typed errors."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from services.logs import LogText
from services.settings import Settings

log = logging.getLogger(__name__)

RATE_LIMIT_STATUSES = frozenset({403, 429})
DEADLINE_MARKER = "context deadline exceeded"
OWNER_DB_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
MAX_MESSAGE_CHARS = 500
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class DoltHubError(Exception):
    """Base of every DoltHub failure; `transient` says whether a later retry may succeed."""

    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DoltHubQueryError(DoltHubError):
    """The query itself was refused (bad SQL, unknown table or database): do not retry."""

    transient = False


class DoltHubDeadlineError(DoltHubError):
    """The server ran out of time (`context deadline exceeded`): ask for a smaller window."""

    transient = True


class DoltHubResponseError(DoltHubError):
    """An answer this client refuses to read: a redirect, or a body over the size cap."""

    transient = False


class DoltHubUnavailable(DoltHubError):
    """Rate limits, 5xx, network errors or timeouts persisted through every retry."""

    transient = True


@dataclass(frozen=True)
class Column:
    """One entry of the response's `schema`."""

    name: str
    type: str


@dataclass(frozen=True)
class _Answer:
    """One response read within the size cap (the body decoded, never beyond the cap)."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class QueryResult:
    """A parsed response: rows keyed by column name, values as the source's strings or None."""

    rows: list[dict[str, str | None]]
    columns: list[Column]
    truncated: bool
    message: str = ""


@dataclass
class ClientStats:
    """Counters for run summaries."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    deadlines: int = 0
    errors_by_status: dict[str, int] = field(default_factory=dict)


class Pacer:
    """Spaces request starts at least `1/rps` apart for every caller; slows down after a 429."""

    def __init__(self, rps: float, max_slowdown: float = 8.0) -> None:
        if rps <= 0:
            raise ValueError("rps must be > 0")
        self.base_interval = 1.0 / rps
        self.interval = self.base_interval
        self.max_interval = self.base_interval * max_slowdown
        self._next_slot = 0.0

    async def wait(self) -> None:
        """Reserve the next slot synchronously (no two callers share one), then sleep to it."""
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

    def throttled(self, pause: float) -> None:
        """After a rate-limit answer: nobody starts for `pause` seconds, and spacing doubles."""
        self.interval = min(self.interval * 2, self.max_interval)
        self._next_slot = max(self._next_slot, time.monotonic() + pause)

    def succeeded(self) -> None:
        """Recover gradually towards the configured rate."""
        if self.interval > self.base_interval:
            self.interval = max(self.base_interval, self.interval * 0.8)


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date), capped; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


class DoltHubClient:
    """Paced, retrying client; one instance is shared by every concurrent caller."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        rps: float = 2.0,
        timeout: float = 60.0,
        max_retries: int = 5,
        branch: str = "master",
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_retry_after: float = 300.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.branch = branch
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.max_response_bytes = max_response_bytes
        self.pacer = Pacer(rps)
        self.stats = ClientStats()
        headers = {"accept": "application/json", "user-agent": "material-changes-ingest"}
        if token:
            headers["authorization"] = f"token {token}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            # The API never redirects; a redirect leads to a page that is not its answer.
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DoltHubClient:
        """Build from the DOLTHUB_* settings (URL, token, pace, branch, timeout, retries)."""
        options: dict[str, Any] = {
            "token": settings.dolthub_token,
            "rps": settings.dolthub_rps,
            "timeout": settings.dolthub_timeout_seconds,
            "max_retries": settings.dolthub_max_retries,
            "branch": settings.dolthub_branch,
            "max_response_bytes": int(settings.dolthub_max_response_mb * 1024 * 1024),
        }
        options.update(overrides)
        return cls(settings.dolthub_api_url, **options)

    async def __aenter__(self) -> DoltHubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url_for(self, owner_db: str) -> str:
        if not OWNER_DB_PATTERN.fullmatch(owner_db):
            raise DoltHubQueryError(f"database must look like 'owner/name', got {owner_db!r}")
        return f"{self.base_url}/{owner_db}/{quote(self.branch, safe='')}"

    async def query(self, owner_db: str, sql: str) -> QueryResult:
        """Run one read-only query; retries transient failures, raises DoltHubError subclasses."""
        url = self.url_for(owner_db)
        last_problem = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            await self.pacer.wait()
            self.stats.requests += 1
            pause: float | None = None
            try:
                response = await self._get(f"{url}?q={quote(sql, safe='')}", owner_db)
            except httpx.TimeoutException as exc:
                last_problem = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_problem = f"network error ({type(exc).__name__}: {exc})"
            else:
                outcome = self._handle(response, owner_db)
                if isinstance(outcome, QueryResult):
                    self.pacer.succeeded()
                    return outcome
                last_problem, pause = outcome
            if attempt < self.max_retries:
                delay = pause if pause is not None else self._backoff(attempt)
                log.warning(
                    "DoltHub %s: %s; retry %d/%d in %.2fs",
                    owner_db,
                    LogText(last_problem),
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise DoltHubUnavailable(
            f"DoltHub {owner_db} unavailable after {self.max_retries + 1} attempts: {last_problem}"
        )

    async def _get(self, url: str, owner_db: str) -> _Answer:
        """GET `url`, reading the body only up to the cap (a bigger one is refused unread)."""
        async with self._http.stream("GET", url) as response:
            if response.is_redirect:
                raise DoltHubResponseError(
                    f"DoltHub {owner_db} answered HTTP {response.status_code} redirecting to "
                    f"{_short(response.headers.get('location', '(no location)'))}; "
                    "redirects are not followed"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                self._too_large(owner_db)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    self._too_large(owner_db)
                chunks.append(chunk)
            return _Answer(
                response.status_code, response.reason_phrase, response.headers, b"".join(chunks)
            )

    def _too_large(self, owner_db: str) -> NoReturn:
        raise DoltHubResponseError(
            f"DoltHub {owner_db} answered more than {self.max_response_bytes} bytes "
            "(DOLTHUB_MAX_RESPONSE_MB); the rest was not read"
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    def _handle(self, response: _Answer, owner_db: str) -> QueryResult | tuple[str, float | None]:
        """A result, a raised permanent error, or (problem, pause-or-None) to retry."""
        status = response.status
        # Rate limits, and every 5xx: gateways and CDNs in front of DoltHub answer an outage
        # with codes beyond 504 (520-530) and an HTML page; none of them is about the query.
        if status in RATE_LIMIT_STATUSES or status >= 500:
            key = str(status)
            self.stats.errors_by_status[key] = self.stats.errors_by_status.get(key, 0) + 1
            body_message = _message_of(response)
            if DEADLINE_MARKER in body_message:
                self._raise_deadline(body_message)
            problem = f"HTTP {status}: {_short(body_message or response.reason)}"
            if status in RATE_LIMIT_STATUSES:
                self.stats.rate_limited += 1
                pause = retry_after_seconds(
                    response.headers.get("retry-after"), self.max_retry_after
                )
                self.pacer.throttled(pause if pause is not None else self.pacer.interval * 2)
                return problem, pause
            return problem, retry_after_seconds(
                response.headers.get("retry-after"), self.max_retry_after
            )
        payload = _json_of(response)
        if payload is None:
            if status >= 400:
                raise DoltHubQueryError(
                    f"DoltHub {owner_db} answered HTTP {status}: {_short(response.text)}"
                )
            return f"HTTP {status} with a body that is not a JSON object", None
        return self._parse(payload, status, owner_db)

    def _raise_deadline(self, message: str) -> None:
        self.stats.deadlines += 1
        raise DoltHubDeadlineError(f"DoltHub query hit its deadline: {_short(message)}")

    def _parse(self, payload: dict[str, Any], status: int, owner_db: str) -> QueryResult:
        execution = str(payload.get("query_execution_status") or "")
        message = str(payload.get("query_execution_message") or "")
        if DEADLINE_MARKER in message:
            self._raise_deadline(message)
        if status >= 400 or execution == "Error":
            detail = message or f"HTTP {status}"
            raise DoltHubQueryError(f"DoltHub {owner_db} refused the query: {_short(detail)}")
        if execution not in ("Success", "RowLimit"):
            raise DoltHubQueryError(f"DoltHub answered an unknown status {execution!r}")
        columns = [
            Column(str(c.get("columnName")), str(c.get("columnType", "")))
            for c in payload.get("schema") or []
            if isinstance(c, dict)
        ]
        return QueryResult(
            rows=_rows_of(payload.get("rows")),
            columns=columns,
            truncated=execution == "RowLimit",
            message=message,
        )


def _json_of(response: _Answer) -> dict[str, Any] | None:
    try:
        payload = json.loads(response.body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _message_of(response: _Answer) -> str:
    payload = _json_of(response)
    if payload is not None:
        return str(payload.get("query_execution_message") or "")
    return response.text[:MAX_MESSAGE_CHARS]


def _rows_of(raw: Any) -> list[dict[str, str | None]]:
    """Rows as dicts of str|None; non-string scalars (never sent by DoltHub) become strings."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DoltHubQueryError("DoltHub response has a non-list `rows`")
    rows: list[dict[str, str | None]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise DoltHubQueryError("DoltHub response has a row that is not an object")
        rows.append({str(k): None if v is None else str(v) for k, v in item.items()})
    return rows
