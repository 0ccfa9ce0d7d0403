"""Read + compute for one entity, in-process or in worker processes (that half is GIL-bound)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ingest.evaluation.loading import (
    DataRange,
    load_series,
    read_history_for_evaluation,
    series_from_history,
)
from services.logs import bound_fields, configure_logging, log_context
from services.market.evaluation import NeedsFullHistory, compute_signal
from services.market.records import Split
from services.market.signals.kind import Evaluation
from services.market.signals.registry import EvaluationParams
from services.market.splits import applicable_splits
from services.settings import Settings
from services.storage.factory import open_object_store
from services.storage.local import LocalObjectStore
from services.storage.object_store import ObjectStore


@dataclass
class Outcome:
    """A computed signal (or the error text) plus where the time went."""

    signal: Evaluation | None = None
    splits: list[Split] = field(default_factory=list)
    error: str | None = None
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    # True when the history object was wanted but missing or unreadable (a rebuild is due).
    history_missing: bool = False


async def load_and_compute(
    store: ObjectStore,
    ticker: str,
    as_of: date,
    params: EvaluationParams,
    known: DataRange,
    *,
    use_history: bool = True,
) -> Outcome:
    """Read the windowed series and compute; widen to everything if a window was too short.

    Reads the history object when `use_history` and it exists, else the partitions.
    """
    outcome = Outcome()
    started = time.perf_counter()
    history = await read_history_for_evaluation(store, ticker) if use_history else None
    outcome.history_missing = use_history and history is None
    outcome.read_seconds += time.perf_counter() - started
    years = params.history_years
    for full in (False, True):
        started = time.perf_counter()
        if history is not None:
            series = series_from_history(
                history, as_of, years=years, known=known, full_history=full
            )
        else:
            series = await load_series(
                store, ticker, as_of, years=years, known=known, full_history=full
            )
        outcome.read_seconds += time.perf_counter() - started
        if not series.dates:
            raise LookupError(f"no prices up to {as_of} in the object store for {ticker}")
        started = time.perf_counter()
        try:
            outcome.signal = compute_signal(series, as_of, params)
        except NeedsFullHistory:
            continue
        finally:
            outcome.compute_seconds += time.perf_counter() - started
        outcome.splits = applicable_splits(series.splits, as_of)
        return outcome
    raise AssertionError("a full history always determines every state")


# --- worker processes -------------------------------------------------------------------

StoreSpec = tuple[str, Path | Settings]
_worker_store: ObjectStore | None = None
_worker_loop: asyncio.AbstractEventLoop | None = None
_worker_log_fields: dict[str, object] = {}


def store_spec(store: ObjectStore, settings: Settings) -> StoreSpec:
    """How a worker process re-creates `store` (a local root, else from the settings)."""
    if isinstance(store, LocalObjectStore):
        return ("local", store.root)
    return ("settings", settings)


def start_workers(processes: int, spec: StoreSpec, settings: Settings) -> ProcessPoolExecutor:
    """`processes` spawned workers, each with its own store, event loop and logging."""
    return ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        # A spawned process starts with no logging set up and none of the caller's context:
        # without both, LOG_FORMAT=json runs would get plain lines from the workers.
        initargs=(spec, settings, bound_fields()),
    )


def _init_worker(spec: StoreSpec, settings: Settings, log_fields: dict[str, object]) -> None:
    global _worker_store, _worker_loop, _worker_log_fields
    configure_logging(settings)
    _worker_log_fields = log_fields
    kind, value = spec
    _worker_loop = asyncio.new_event_loop()
    if kind == "local":
        assert isinstance(value, Path)
        _worker_store = LocalObjectStore(value, fsync=False)
    else:
        assert isinstance(value, Settings)
        _worker_store = open_object_store(value)


def compute_in_worker(
    ticker: str, as_of: date, params: EvaluationParams, known: DataRange, use_history: bool
) -> Outcome:
    """Worker entry point; errors come back as text (custom exceptions may not unpickle)."""
    assert _worker_loop is not None and _worker_store is not None
    try:
        with log_context(**_worker_log_fields, ticker=ticker):
            return _worker_loop.run_until_complete(
                load_and_compute(
                    _worker_store, ticker, as_of, params, known, use_history=use_history
                )
            )
    except Exception as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}")
