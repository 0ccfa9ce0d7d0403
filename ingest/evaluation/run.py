"""`python -m ingest evaluate`: claim entities, compute signals, store them, write alerts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from ingest.evaluation.loading import DataRange
from ingest.evaluation.parallel import (
    compute_in_worker,
    load_and_compute,
    start_workers,
    store_spec,
)
from services import signal_store
from services.db import create_pool, database_outage
from services.delivery.registry import ALL_CHANNELS, DeliveryChannel, configured_channels
from services.errors import ServiceError
from services.logs import log_context
from services.market.explanation import explain
from services.market.records import Split
from services.market.signals.kind import Evaluation, Previous
from services.market.signals.registry import EvaluationParams
from services.market.transitions import transitions
from services.market_data_writes import rebuild_history
from services.settings import Settings
from services.storage.factory import open_object_store
from services.storage.object_store import ObjectStore
from services.tickers import normalize_ticker

log = logging.getLogger(__name__)

# Called as progress(done, total) after every entity this process finishes.
Progress = Callable[[int, int], None]
# Entities of one claimed batch in flight at once: overlaps Parquet reads with DB writes.
CONCURRENCY = 4
LOG_EVERY = 100


@dataclass
class EvaluationSummary:
    """Counts and timings of one evaluator process's share of a run."""

    as_of: date | None = None
    entities: int = 0
    signals_written: int = 0
    alerts_written: int = 0
    failures: int = 0
    failed_tickers: list[str] = field(default_factory=list)
    skipped_tickers: list[str] = field(default_factory=list)
    stopped: bool = False
    released: int = 0
    run_entities: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    histories_rebuilt: int = 0

    def summary_line(self) -> str:
        """One line for the end of the command's output."""
        day = self.as_of.isoformat() if self.as_of else "n/a (no watched entity with price data)"
        line = (
            f"evaluate as of {day}: {self.entities} entities evaluated, "
            f"{self.signals_written} signals written, {self.alerts_written} alerts written, "
            f"{self.failures} failed"
        )
        if self.failed_tickers:
            line += f" ({', '.join(self.failed_tickers[:10])})"
        if self.skipped_tickers:
            line += f", {len(self.skipped_tickers)} skipped without price data"
            line += f" ({', '.join(self.skipped_tickers[:10])})"
        if self.histories_rebuilt:
            line += f", {self.histories_rebuilt} history objects rebuilt"
        if self.stopped:
            line += f", stopped by a signal ({self.released} claims handed back to the run)"
        return line + f" in {self.seconds:.1f}s"


@dataclass
class _Job:
    pool: asyncpg.Pool
    store: ObjectStore
    params: EvaluationParams
    run: signal_store.EvaluationRun
    worker: str
    summary: EvaluationSummary
    progress: Progress | None
    stop: asyncio.Event
    workers: ProcessPoolExecutor | None = None
    concurrency: int = CONCURRENCY
    use_history: bool = True
    alert_chunk_size: int = 2_000
    channels: frozenset[DeliveryChannel] = ALL_CHANNELS


async def run_evaluation(
    settings: Settings,
    dsn: str | None,
    *,
    as_of: date | None = None,
    tickers: list[str] | None = None,
    store: ObjectStore | None = None,
    progress: Progress | None = None,
    pool: asyncpg.Pool | None = None,
    stop: asyncio.Event | None = None,
) -> EvaluationSummary:
    """Evaluate every watched entity with price data (or `tickers`) for `as_of`.

    `as_of` defaults to the latest price date over those entities. Several processes may run
    this at once for the same date: they join one run and split its entities. Once `stop` is
    set no further entity is started; the ones in hand are committed and the rest of this
    process's claims go back to the run for the next evaluator.
    """
    started = time.perf_counter()
    wanted = None if tickers is None else sorted({normalize_ticker(t) for t in tickers})
    summary = EvaluationSummary()
    own_store = store is None
    object_store = store if store is not None else open_object_store(settings)
    own_pool = pool is None
    if pool is None:
        assert dsn is not None, "run_evaluation needs a DSN or a pool"
        pool = await create_pool(
            dsn,
            min_size=1,
            max_size=max(CONCURRENCY, 2 * settings.evaluation_processes) + 1,
            statement_cache_size=settings.database_statement_cache_size,
        )
    try:
        if wanted is not None:
            present = await signal_store.evaluable_tickers(pool, wanted)
            summary.skipped_tickers = [t for t in wanted if t not in present]
            for ticker in summary.skipped_tickers:
                log.warning("evaluate: %s has no price data (or is unknown); skipped", ticker)
            wanted = [t for t in wanted if t in present]
        day = as_of or await signal_store.latest_price_date(pool, wanted)
        summary.as_of = day
        if day is None or wanted == []:
            log.info("evaluate: nothing to evaluate")
        else:
            run = await signal_store.join_or_create_run(pool, day, wanted)
            summary.run_entities = run.entity_count
            if progress is not None:
                progress(0, run.entity_count)
            stopping = stop or asyncio.Event()
            await _evaluate_run(pool, object_store, settings, run, summary, progress, stopping)
            summary.stopped = stopping.is_set()
            await signal_store.finish_run_if_complete(pool, run.id)
    finally:
        if own_pool:
            await pool.close()
        if own_store:
            await object_store.close()
    summary.seconds = time.perf_counter() - started
    return summary


async def _evaluate_run(
    pool: asyncpg.Pool,
    store: ObjectStore,
    settings: Settings,
    run: signal_store.EvaluationRun,
    summary: EvaluationSummary,
    progress: Progress | None,
    stop: asyncio.Event,
) -> None:
    """This process's share of the run, with EVALUATION_PROCESSES worker processes if > 1."""
    processes = settings.evaluation_processes
    workers = (
        start_workers(processes, store_spec(store, settings), settings) if processes > 1 else None
    )
    job = _Job(
        pool=pool,
        store=store,
        params=settings.evaluation,
        run=run,
        worker=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        summary=summary,
        progress=progress,
        stop=stop,
        workers=workers,
        # Keep every worker busy while the main process writes to Postgres.
        concurrency=max(CONCURRENCY, 2 * processes),
        use_history=settings.derived_history,
        alert_chunk_size=settings.evaluation_alert_chunk,
        channels=configured_channels(settings),
    )
    try:
        await _drain(job, settings)
    finally:
        if workers is not None:
            await asyncio.to_thread(workers.shutdown, wait=True, cancel_futures=True)


async def _drain(job: _Job, settings: Settings) -> None:
    """Claim batches until the run has nothing left for this process (or a stop)."""
    renewing = asyncio.create_task(_renew_claims_forever(job, settings.evaluation_lease_seconds))
    try:
        while not job.stop.is_set():
            batch = await signal_store.claim_batch(
                job.pool,
                job.run.id,
                job.worker,
                settings.evaluation_batch_size,
                settings.evaluation_lease_seconds,
            )
            if not batch:
                return
            await _process_batch(job, batch)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


async def _renew_claims_forever(job: _Job, lease_seconds: float) -> None:
    """Extend this process's claims every third of a lease while it holds any.

    A batch whose entities take long (slow store reads, large alert bursts) must not lose
    its later claims to another evaluator halfway through; a process that dies stops
    renewing, and its claims expire as before.
    """
    while True:
        await asyncio.sleep(lease_seconds / 3)
        try:
            await signal_store.renew_claims(job.pool, job.run.id, job.worker)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("evaluate: could not renew claims: %s", exc)


async def _process_batch(job: _Job, batch: list[signal_store.ClaimedEntity]) -> None:
    """Evaluate one claimed batch, a few entities at a time."""
    ids = [entity.id for entity in batch]
    previous = await signal_store.previous_signals(job.pool, ids, job.run.as_of)
    # A back-dated run stores its signal but never alerts backwards.
    later = await signal_store.evaluated_later(job.pool, ids, job.run.as_of)
    gate = asyncio.Semaphore(job.concurrency)

    async def one(entity: signal_store.ClaimedEntity) -> None:
        async with gate:
            if not job.stop.is_set():
                with log_context(ticker=entity.ticker):
                    before = None if entity.id in later else previous.get(entity.id)
                    await _evaluate_one(job, entity, before)

    await asyncio.gather(*(one(entity) for entity in batch))
    if job.stop.is_set():
        # Entities in hand were committed; the unstarted ones are due again at once.
        job.summary.released += await signal_store.release_claims(job.pool, job.run.id, job.worker)


async def _evaluate_one(
    job: _Job, entity: signal_store.ClaimedEntity, previous: asyncpg.Record | None
) -> None:
    """Evaluate, then commit; any exception is logged with the ticker and counted."""
    summary = job.summary
    try:
        signal, splits, history_missing = await _signal_for(job, entity)
        started = time.perf_counter()
        prev = _previous(previous, splits, job.run.as_of)
        found = transitions(
            prev,
            signal,
            lambda kind, old, new: explain(entity.ticker, kind, old, new, signal, prev),
        )
        summary.compute_seconds += time.perf_counter() - started
        started = time.perf_counter()
        fan_out = (
            signal_store.FanOut(found, previous["computed_at"], job.alert_chunk_size, job.channels)
            if found and previous is not None
            else None
        )
        written = await signal_store.commit_entity(
            job.pool,
            run_id=job.run.id,
            worker=job.worker,
            signal=_signal_row(entity, signal),
            fan_out=fan_out,
        )
        summary.write_seconds += time.perf_counter() - started
        if written is None:
            log.warning("evaluate: lost the claim on %s (lease expired); skipped", entity.ticker)
        else:
            summary.entities += 1
            summary.signals_written += 1
            summary.alerts_written += written
        if history_missing:
            await _rebuild_history(job, entity.ticker)
    except Exception as exc:
        log.error("evaluate: %s failed: %s: %s", entity.ticker, type(exc).__name__, exc)
        log.debug("evaluate: %s traceback", entity.ticker, exc_info=exc)
        summary.failures += 1
        summary.failed_tickers.append(entity.ticker)
        await _record_failure(job, entity, exc)
    _report(job)


async def _signal_for(
    job: _Job, entity: signal_store.ClaimedEntity
) -> tuple[Evaluation, list[Split], bool]:
    """The signal and splits (computed here or in a worker); True if the history was missing."""
    known = DataRange(entity.price_data_min_date, entity.fundamental_data_min_date)
    day, ticker = job.run.as_of, entity.ticker
    if job.workers is None:
        outcome = await load_and_compute(
            job.store, ticker, day, job.params, known, use_history=job.use_history
        )
    else:
        outcome = await asyncio.get_running_loop().run_in_executor(
            job.workers, compute_in_worker, ticker, day, job.params, known, job.use_history
        )
    job.summary.read_seconds += outcome.read_seconds
    job.summary.compute_seconds += outcome.compute_seconds
    if outcome.error is not None or outcome.signal is None:
        raise EvaluationFailed(outcome.error or "no signal computed")
    return outcome.signal, outcome.splits, outcome.history_missing


async def _rebuild_history(job: _Job, ticker: str) -> None:
    """Write the missing history object so the next run reads one object; never fails the run."""
    started = time.perf_counter()
    try:
        if await rebuild_history(job.pool, job.store, ticker):
            job.summary.histories_rebuilt += 1
    except (ServiceError, asyncpg.PostgresError, OSError) as exc:
        log.warning("evaluate: could not rebuild the history object of %s: %s", ticker, exc)
    job.summary.write_seconds += time.perf_counter() - started


class EvaluationFailed(Exception):
    """A worker process could not evaluate an entity (the message says why)."""


def _previous(row: asyncpg.Record | None, splits: Sequence[Split], as_of: date) -> Previous | None:
    """The previous stored signal with per-share numbers moved to as_of's share basis."""
    if row is None:
        return None
    factor = 1.0
    for split in splits:
        if row["as_of"] < split.ex_date <= as_of:
            factor *= split.for_factor / split.to_factor
    return signal_store.previous_of(row, factor)


def _signal_row(entity: signal_store.ClaimedEntity, signal: Evaluation) -> signal_store.SignalRow:
    return signal_store.SignalRow.of(entity.id, signal)


async def _record_failure(job: _Job, entity: signal_store.ClaimedEntity, exc: Exception) -> None:
    if database_outage(exc) is not None:
        # Nothing can be recorded; the claim is taken over by the next run (its lease, or at
        # once after a server restart), and the next claim ends this run with the outage.
        return
    try:
        await signal_store.fail_claim(
            job.pool, job.run.id, entity.id, job.worker, f"{type(exc).__name__}: {exc}"
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as db_exc:
        log.error("evaluate: could not record the failure of %s: %s", entity.ticker, db_exc)


def _report(job: _Job) -> None:
    """Advance the caller's progress, or log every LOG_EVERY entities without one."""
    done = job.summary.entities + job.summary.failures
    if job.progress is not None:
        job.progress(done, job.run.entity_count)
    elif done % LOG_EVERY == 0:
        log.info("evaluate: %d/%d entities done by this process", done, job.run.entity_count)
