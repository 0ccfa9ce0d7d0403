"""The backfill worker: drain the queue with N concurrent workers per process.

A ticker that completes and has watchers is evaluated at once (silently, as a first
evaluation), so its arrows show before the next daily run. A stop request (SIGTERM/SIGINT
through `stop`) ends the claiming, cancels the fetches in flight and hands their jobs back
to the queue as due now.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

import asyncpg

from ingest.dolthub.client import DoltHubClient, DoltHubError
from ingest.dolthub.earnings import fetch_fundamentals
from ingest.dolthub.stocks import (
    TickerNotInSource,
    fetch_dividends,
    fetch_price_bars,
    fetch_splits,
    fetch_symbol,
)
from ingest.dolthub.values import RejectCounts
from ingest.progress import Progress
from services import backfill_queue as claims
from services import signal_store
from services.data_coverage import mark_unavailable, record_written
from services.errors import ServiceError
from services.logs import LogText, log_context
from services.market_data_writes import TickerData, write_objects
from services.settings import Settings
from services.storage.object_store import ObjectStore, ObjectStoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Fundamentals reach further back than prices: TTM needs 4 quarters, the direction 8.
FUNDAMENTALS_EXTRA_YEARS = 2
# How often an idle `--follow` worker looks for new or newly due jobs.
FOLLOW_POLL_SECONDS = 2.0


class Stopped(Exception):
    """A stop was requested while the job's work was in flight."""


class PermanentFailure(Exception):
    """Retrying cannot help (no data at the source, a refused query, a malformed ticker)."""


@dataclass
class FetchedTicker:
    """A ticker's data plus its reject counts and query count."""

    data: TickerData
    rejected: RejectCounts
    queries: int


def today_utc() -> date:
    return datetime.now(UTC).date()


def backfill_start(today: date, years: int) -> date:
    """1 January `years` years back: every calendar year window is whole except the last."""
    return date(today.year - years, 1, 1)


async def fetch_ticker(
    client: DoltHubClient, settings: Settings, ticker: str, today: date
) -> FetchedTicker:
    """Prices first (an unknown ticker fails after them), then the rest concurrently."""
    start = backfill_start(today, settings.backfill_years)
    stocks, earnings = settings.dolthub_stocks_db, settings.dolthub_earnings_db
    prices = await fetch_price_bars(client, stocks, ticker, start, today, require_rows=True)
    if not prices.rows:
        raise PermanentFailure(
            f"every one of the {prices.source_rows} price rows DoltHub has for {ticker} since "
            f"{start} was invalid ({prices.rejected.describe()})"
        )
    fundamentals_start = date(start.year - FUNDAMENTALS_EXTRA_YEARS, 1, 1)
    async with asyncio.TaskGroup() as group:
        quarters = group.create_task(
            fetch_fundamentals(client, earnings, ticker, fundamentals_start, today)
        )
        splits = group.create_task(fetch_splits(client, stocks, ticker, end=today))
        dividends = group.create_task(fetch_dividends(client, stocks, ticker, start, today))
        symbol = group.create_task(fetch_symbol(client, stocks, ticker))
    rejected = RejectCounts()
    for result in (prices, quarters.result(), splits.result(), dividends.result()):
        rejected.update(result.rejected)
    data = TickerData(
        ticker=ticker,
        bars=prices.rows,
        quarters=quarters.result().rows,
        splits=splits.result().rows,
        dividends=dividends.result().rows,
        symbol=symbol.result(),
    )
    queries = (
        prices.queries
        + quarters.result().queries
        + splits.result().queries
        + dividends.result().queries
        + 1
    )
    return FetchedTicker(data, rejected, queries)


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from TaskGroup."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def is_permanent(exc: BaseException) -> bool:
    """The ticker itself is the problem: no data at the source, or a malformed ticker."""
    if isinstance(exc, PermanentFailure | TickerNotInSource):
        return True
    return isinstance(exc, ServiceError) and not isinstance(exc, ObjectStoreError)


def is_expected_transient(exc: BaseException) -> bool:
    """Outages that retries are for (network, 429/5xx, deadlines, storage hiccups)."""
    if isinstance(exc, DoltHubError):
        return exc.transient
    return isinstance(exc, ObjectStoreError | OSError)


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, DoltHubError | ServiceError) else f"{type(exc).__name__}: {text}"


def error_category(exc: BaseException) -> claims.BackfillErrorCategory:
    """The public category of a job's failure (its raw text is for operators only)."""
    if is_permanent(exc):
        return claims.BackfillErrorCategory.NO_DATA
    if isinstance(exc, DoltHubError):
        if exc.transient:
            return claims.BackfillErrorCategory.SOURCE_UNAVAILABLE
        return claims.BackfillErrorCategory.REJECTED
    return claims.BackfillErrorCategory.INTERNAL


class BackfillRun:
    """One `python -m ingest backfill` invocation: shared pool, client, store and budget."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        client: DoltHubClient,
        store: ObjectStore,
        progress: Progress,
        *,
        max_items: int | None = None,
        today: date | None = None,
        stop: asyncio.Event | None = None,
        follow: bool = False,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.store = store
        self.progress = progress
        self.remaining = max_items
        self.fixed_today = today  # None: the real date, read per job (a follower runs for days)
        self.lease = float(settings.backfill_lease_seconds)
        self.worker_prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.stop = stop or asyncio.Event()
        self.follow = follow
        # One entity at a time: a worker process per evaluation would cost more than it saves.
        self.evaluation_settings = dataclasses.replace(settings, evaluation_processes=1)

    async def run(self, workers: int) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(workers):
                group.create_task(self.worker(f"{self.worker_prefix}:{index}"))

    def _reserve(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def _release(self) -> None:
        if self.remaining is not None:
            self.remaining += 1

    async def worker(self, name: str) -> None:
        """Claim and process jobs until none is due (following: until a stop) or the budget ends."""
        while not self.stop.is_set() and self._reserve():
            async with self.pool.acquire() as conn:
                await claims.reclaim_expired(conn, self.lease)
                job = await claims.claim(conn, name, self.lease)
            if job is None:
                self._release()
                if not self.follow:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), FOLLOW_POLL_SECONDS)
                continue
            await self.process(job)

    async def process(self, job: claims.ClaimedJob) -> None:
        with log_context(ticker=job.ticker):
            await self._process(job)

    async def _process(self, job: claims.ClaimedJob) -> None:
        log.info("%s: backfilling %s (attempt %d)", job.locked_by, job.ticker, job.retry_count + 1)
        try:
            fetched = await self._holding_lease(job, lambda: self._fetch_and_write(job))
        except Stopped:
            await self._hand_back(job)
        except claims.LeaseLost as exc:
            self.progress.item_failed(job.ticker, str(exc), outcome="lease lost")
        except Exception as raw:
            await self._failed(job, _unwrap(raw))
        else:
            self.progress.add("bars written", len(fetched.data.bars))
            self.progress.add("quarters written", len(fetched.data.quarters))
            self.progress.add("splits written", len(fetched.data.splits))
            self.progress.add("dividends written", len(fetched.data.dividends or ()))
            self.progress.add("rows rejected", fetched.rejected.rejected)
            self.progress.item_done("completed")
            await self._first_evaluation(job.ticker)

    async def _hand_back(self, job: claims.ClaimedJob) -> None:
        async with self.pool.acquire() as conn:
            outcome = await claims.release(conn, job)
        log.info("%s: stopped; job %s handed back (%s)", job.locked_by, job.ticker, outcome)
        self.progress.item_done("released")

    async def _first_evaluation(self, ticker: str) -> None:
        """Evaluate a freshly completed ticker for its watchers; a failure is reported, not fatal.

        Watchers without stored states get them silently; the next daily run alerts as usual.
        Not cut short by a stop: one entity takes well under a second.
        """
        if not await signal_store.watched_tickers(self.pool, [ticker]):
            return
        # Imported here: the evaluation stack (numpy, pyarrow compute) would slow every start.
        from ingest.evaluation.run import run_evaluation

        try:
            summary = await run_evaluation(
                self.evaluation_settings,
                None,
                tickers=[ticker],
                store=self.store,
                pool=self.pool,
            )
        except Exception as exc:
            # A follow-up step: it must not take the worker (and its siblings) down with it.
            if not isinstance(exc, asyncpg.PostgresError | OSError | ServiceError):
                log.error("%s: first evaluation crashed", ticker, exc_info=exc)
            self.progress.failed_step(f"{ticker} first evaluation", describe(exc))
            return
        if summary.failures:
            self.progress.failed_step(f"{ticker} first evaluation", "see the log above")
        else:
            self.progress.add("evaluated", summary.entities)
            if summary.alerts_written:
                self.progress.add("alerts written", summary.alerts_written)

    async def _fetch_and_write(self, job: claims.ClaimedJob) -> FetchedTicker:
        today = self.fixed_today or today_utc()
        fetched = await fetch_ticker(self.client, self.settings, job.ticker, today)
        if fetched.rejected.rejected:
            log.warning("%s: %s", job.ticker, fetched.rejected.describe())
        written = await write_objects(self.pool, self.store, fetched.data)
        # Objects are all in place; flip the entity and finish the job atomically.
        async with self.pool.acquire() as conn, conn.transaction():
            await claims.complete(conn, job)
            await record_written(conn, written)
        return fetched

    async def _holding_lease(self, job: claims.ClaimedJob, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` while renewing the lease; cancel it if the lease is lost or on a stop."""
        task = asyncio.ensure_future(work())
        stopping = asyncio.ensure_future(self.stop.wait())
        interval = max(0.2, self.lease / 3)
        try:
            while True:
                await asyncio.wait(
                    {task, stopping}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                if task.done():
                    return task.result()
                if stopping.done():
                    raise Stopped
                async with self.pool.acquire() as conn:
                    if not await claims.heartbeat(conn, job):
                        task.cancel()
                        raise claims.LeaseLost(f"{job.ticker}: lease lost to another worker")
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _failed(self, job: claims.ClaimedJob, exc: BaseException) -> None:
        message = describe(exc)
        category = error_category(exc)
        async with self.pool.acquire() as conn:
            try:
                if is_permanent(exc):
                    async with conn.transaction():
                        await claims.fail_permanently(conn, job, message, category)
                        await mark_unavailable(conn, job.ticker)
                    self.progress.item_done("unavailable")
                    log.warning("%s: unavailable: %s", job.ticker, LogText(message))
                    return
                outcome = await claims.retry_transient(conn, job, message, category)
            except claims.LeaseLost as lost:
                self.progress.item_failed(job.ticker, str(lost), outcome="lease lost")
                return
        if not is_expected_transient(exc) and outcome.status != "failed":
            # A refused query (bad configuration, schema change) or a bug: not the ticker's
            # fault, so the job is kept for a retry, but the run must report the failure.
            if not isinstance(exc, DoltHubError):
                log.error("%s: unexpected error", job.ticker, exc_info=exc)
            retry = (
                f" (retry {outcome.retry_count} scheduled)" if outcome.status == "pending" else ""
            )
            self.progress.item_failed(job.ticker, message + retry)
        elif outcome.status == "pending":
            self.progress.item_done("retry scheduled")
            log.warning(
                "%s: transient failure, retry %d at %s: %s",
                job.ticker,
                outcome.retry_count,
                outcome.next_attempt_at,
                LogText(message),
            )
        elif outcome.status == "superseded":
            self.progress.item_done("superseded")
        else:
            self.progress.item_failed(job.ticker, outcome_message(message))


def outcome_message(message: str) -> str:
    return f"gave up after {claims.MAX_RETRIES} retries: {message}"


async def run_backfill(
    settings: Settings,
    pool: asyncpg.Pool,
    client: DoltHubClient,
    store: ObjectStore,
    progress: Progress,
    *,
    workers: int = 1,
    max_items: int | None = None,
    today: date | None = None,
    stop: asyncio.Event | None = None,
    follow: bool = False,
) -> Progress:
    """Drain the due part of the queue (with `follow`, keep polling) until `stop` is set."""
    run = BackfillRun(
        settings,
        pool,
        client,
        store,
        progress,
        max_items=max_items,
        today=today,
        stop=stop,
        follow=follow,
    )
    if follow:
        log.info("backfill: following the queue (polling every %.0f s)", FOLLOW_POLL_SECONDS)
    await run.run(workers)
    return progress
