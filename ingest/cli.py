"""`python -m ingest <command>`: argument parsing, resources, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from ingest.dolthub.client import DoltHubClient, DoltHubError
from ingest.progress import Progress
from ingest.shutdown import stop_on_signals
from services.db import create_pool, database_outage, redact_dsn, resolve_database_url
from services.delivery.registry import CHANNELS
from services.errors import BadUserInput, ConfigurationError, ServiceError
from services.logs import configure_logging, log_context, report_error
from services.settings import Settings
from services.storage.factory import open_object_store
from services.storage.object_store import ObjectStore
from services.symbols import sync_age
from services.tickers import normalize_ticker

log = logging.getLogger("ingest")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad command-line arguments: one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports mistakes as a single `error: …` line instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `python -m ingest {self._command()}--help`)")

    def _command(self) -> str:
        parts = self.prog.split()[3:]  # "python -m ingest <sub>"
        return "".join(p + " " for p in parts)


def one_ticker(raw: str) -> str:
    """One ticker argument, normalised; a bad one is an argument error."""
    try:
        return normalize_ticker(raw)
    except BadUserInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def ticker_list(raw: str) -> list[str]:
    """`A,B` → ['A', 'B'] normalised and de-duplicated in order; a bad one is an error."""
    tickers: list[str] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        ticker = one_ticker(part)
        if ticker not in tickers:
            tickers.append(ticker)
    if not tickers:
        raise argparse.ArgumentTypeError(
            "expected a comma-separated list of tickers, e.g. AAPL,MSFT"
        )
    return tickers


# How long `daily` waits before asking the source again for a ticker it had no data for.
RECHECK_UNAVAILABLE_DAYS = 7


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def iso_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {raw!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mc-ingest" if Path(sys.argv[0]).name == "mc-ingest" else "python -m ingest",
        description="Material Changes batch jobs (configuration comes from the environment).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    backfill = commands.add_parser("backfill", help="drain the backfill queue")
    backfill.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="concurrent workers in this process (default 1)",
    )
    backfill.add_argument(
        "--max-items",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after claiming N jobs",
    )
    backfill.add_argument(
        "--follow",
        action="store_true",
        help="keep running: poll for new jobs every 2 s (stop with SIGTERM)",
    )
    update = commands.add_parser("update-prices", help="append new daily bars")
    update.add_argument(
        "--tickers",
        type=ticker_list,
        metavar="A,B",
        help="only these tickers (default: every entity with price data)",
    )
    evaluate = commands.add_parser("evaluate", help="compute signals, update states, write alerts")
    evaluate.add_argument(
        "--as-of",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="evaluation date (default: the latest date with prices)",
    )
    evaluate.add_argument("--tickers", type=ticker_list, metavar="A,B", help="only these tickers")
    deliver = commands.add_parser("deliver", help="send due webhook and email deliveries")
    deliver.add_argument(
        "--follow",
        action="store_true",
        help="keep running: woken by new alerts, sweeping for retries (stop with SIGTERM)",
    )
    deliver.add_argument(
        "--workers", type=positive_int, default=2, metavar="N", help="concurrent webhook senders"
    )
    commands.add_parser(
        "daily",
        help="update-prices, backfill, evaluate, deliver, sync-symbols when due (the cron entry)",
    )
    commands.add_parser("sync-symbols", help="load DoltHub's symbol table into entities")
    requeue = commands.add_parser(
        "requeue", help="queue failed or unavailable tickers (or the named ones) for backfill"
    )
    requeue.add_argument("--failed", action="store_true", help="tickers whose last job failed")
    requeue.add_argument(
        "--unavailable", action="store_true", help="tickers the source had no data for"
    )
    requeue.add_argument("tickers", nargs="*", type=one_ticker, metavar="TICKER")
    importer = commands.add_parser("import-csv", help="bulk import DoltHub table exports")
    importer.add_argument(
        "directory",
        type=Path,
        metavar="DIR",
        help="folder with ohlcv.csv, symbol.csv, income_statement.csv, …",
    )
    demo = commands.add_parser("demo", help="write the offline demo data set and import it")
    demo.add_argument(
        "--if-needed",
        action="store_true",
        help="do nothing when the demo is already fully loaded (what `make run` uses)",
    )
    return parser


@dataclass
class Resources:
    """What a command needs, opened lazily and closed at the end of the run."""

    settings: Settings
    stack: AsyncExitStack
    dsn: str = ""
    _pool: asyncpg.Pool | None = None
    _store: ObjectStore | None = None
    _client: DoltHubClient | None = None

    async def pool(self, size: int = 4) -> asyncpg.Pool:
        if self._pool is None:
            self.dsn = self.dsn or resolve_database_url(self.settings)
            try:
                pool = await create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=max(size, 2),
                    statement_cache_size=self.settings.database_statement_cache_size,
                )
            except (OSError, asyncpg.PostgresError) as exc:
                raise ConfigurationError(
                    f"cannot connect to the database at {redact_dsn(self.dsn)}: {exc}"
                ) from None
            self.stack.push_async_callback(pool.close)
            await _require_migrated(pool)  # checked again by the next step until it passes
            self._pool = pool
        return self._pool

    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_object_store(self.settings)
            self.stack.push_async_callback(self._store.close)
        return self._store

    def progress(self, label: str) -> Progress:
        """A bar on a terminal, else log lines; always log lines when the logs are JSON."""
        progress = Progress(
            label, interactive=False if self.settings.log_format == "json" else None
        )
        self.stack.callback(progress.close)  # a command that raises still restores the terminal
        return progress

    def client(self) -> DoltHubClient:
        if self._client is None:
            self._client = DoltHubClient.from_settings(self.settings)
            self.stack.push_async_callback(self._client.aclose)
        return self._client


async def _require_migrated(pool: asyncpg.Pool) -> None:
    present = await pool.fetchval("SELECT to_regclass('public.backfill_queue') IS NOT NULL")
    if not present:
        raise ConfigurationError(
            "the database has no schema yet: run `python -m migrations up` first"
        )


def finish(progress: Progress) -> int:
    """Print the summary line; exit status 1 when any item failed."""
    progress.close()
    print(progress.summary_line(), flush=True)
    return EXIT_FAILED if progress.failed else EXIT_OK


async def cmd_backfill(res: Resources, args: argparse.Namespace) -> int:
    from ingest.jobs.backfill import run_backfill

    progress = res.progress("backfill")
    pool = await res.pool(args.workers + 2)
    if getattr(args, "recheck_unavailable_days", None):
        # A listing can appear later: `daily` retries what the source lacked a week ago.
        from services import backfill_queue

        stale = await backfill_queue.unavailable_tickers(pool, args.recheck_unavailable_days)
        rechecked = await backfill_queue.requeue(pool, stale)
        if rechecked:
            print(f"backfill: re-checking {len(rechecked)} unavailable tickers", flush=True)
    client = res.client()
    before = client.stats.requests
    with stop_on_signals(_stop_event(args)) as stop:
        await run_backfill(
            res.settings,
            pool,
            client,
            res.store(),
            progress,
            workers=args.workers,
            max_items=args.max_items,
            stop=stop,
            follow=getattr(args, "follow", False),
        )
    progress.add("DoltHub requests", client.stats.requests - before)
    return finish(progress)


async def cmd_requeue(res: Resources, args: argparse.Namespace) -> int:
    from services import backfill_queue

    if not (args.failed or args.unavailable or args.tickers):
        raise UsageError("requeue: name tickers, or pass --failed and/or --unavailable")
    pool = await res.pool()
    chosen = list(args.tickers)
    if args.failed:
        chosen += await backfill_queue.failed_tickers(pool)
    if args.unavailable:
        chosen += await backfill_queue.unavailable_tickers(pool)
    queued = await backfill_queue.requeue(pool, sorted(set(chosen)))
    skipped = len(set(chosen)) - len(queued)
    print(
        f"requeue: {len(queued)} tickers queued for backfill"
        + (f", {skipped} already being processed" if skipped else "")
        + (f" ({', '.join(queued[:10])}{', …' if len(queued) > 10 else ''})" if queued else ""),
        flush=True,
    )
    return EXIT_OK


async def cmd_update_prices(res: Resources, args: argparse.Namespace) -> int:
    from ingest.jobs.update_prices import run_update_prices

    progress = res.progress("update-prices")
    await run_update_prices(
        res.settings, await res.pool(6), res.client(), res.store(), progress, tickers=args.tickers
    )
    return finish(progress)


async def cmd_evaluate(res: Resources, args: argparse.Namespace) -> int:
    from ingest.evaluation.run import run_evaluation

    await res.pool()  # fail early, with the usual message, when the database is unusable
    for channel in CHANNELS:
        if not channel.configured(res.settings):
            log.warning("evaluate: %s", channel.not_configured)
    progress = res.progress("evaluate")
    with stop_on_signals(_stop_event(args)) as stop:
        summary = await run_evaluation(
            res.settings,
            res.dsn,
            as_of=args.as_of,
            tickers=args.tickers,
            store=res.store(),
            progress=progress.track,
            stop=stop,
        )
    progress.close()
    print(summary.summary_line(), flush=True)
    return EXIT_FAILED if summary.failures else EXIT_OK


async def cmd_daily(res: Resources, args: argparse.Namespace) -> int:
    """The steps in order; a failing step never stops the next one, a SIGTERM/SIGINT does."""
    stop = asyncio.Event()  # set by the backfill and evaluate steps' signal handlers
    steps: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("update-prices", lambda: cmd_update_prices(res, _ns(tickers=None))),
        (
            "backfill",
            lambda: cmd_backfill(
                res,
                _ns(
                    workers=2,
                    max_items=None,
                    recheck_unavailable_days=RECHECK_UNAVAILABLE_DAYS,
                    stop=stop,
                ),
            ),
        ),
        ("evaluate", lambda: cmd_evaluate(res, _ns(as_of=None, tickers=None, stop=stop))),
        ("deliver", lambda: cmd_deliver(res, _ns(follow=False, workers=2))),
        (
            "sync-symbols",
            lambda: cmd_sync_symbols(res, _ns(max_age_days=res.settings.symbols_max_age_days)),
        ),
    ]
    failed: list[str] = []
    for index, (name, step) in enumerate(steps):
        if stop.is_set():
            skipped = ", ".join(n for n, _ in steps[index:])
            print(f"daily: stopped by a signal; steps not run: {skipped}", flush=True)
            return EXIT_INTERRUPTED
        try:
            with log_context(step=name):
                status = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            report_error(f"{name}: {_message(exc)}", "ingest")
            if not isinstance(exc, ServiceError):
                log.debug("%s crashed", name, exc_info=exc)
            status = EXIT_FAILED
        if status:
            failed.append(name)
    print(
        "daily: " + (f"failed steps: {', '.join(failed)}" if failed else "all steps succeeded"),
        flush=True,
    )
    return EXIT_FAILED if failed else EXIT_OK


async def cmd_deliver(res: Resources, args: argparse.Namespace) -> int:
    from ingest.jobs.deliver import run_deliver

    progress = res.progress("deliver")
    pool = await res.pool(args.workers + 2)
    await run_deliver(
        res.settings, pool, res.dsn, progress, follow=args.follow, workers=args.workers
    )
    return finish(progress)


async def cmd_sync_symbols(res: Resources, args: argparse.Namespace) -> int:
    from ingest.jobs.sync_symbols import run_sync_symbols

    pool = await res.pool()
    max_age = getattr(args, "max_age_days", None)
    if max_age is not None:
        age = await sync_age(pool, max_age)
        if not age.due:
            assert age.last_finished_at is not None
            print(
                f"sync-symbols: skipped; last complete sync "
                f"{age.last_finished_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC is within "
                f"SYMBOLS_MAX_AGE_DAYS={max_age}",
                flush=True,
            )
            return EXIT_OK
    progress = res.progress("sync-symbols")
    changes = await run_sync_symbols(res.settings, pool, res.client(), progress)
    status = finish(progress)
    if changes.added or changes.retired:
        print(changes.report_line(), flush=True)
    return status


async def cmd_import_csv(res: Resources, args: argparse.Namespace) -> int:
    from ingest.jobs.csv_import import find_csv_files, run_import_csv

    files = find_csv_files(args.directory)  # argument errors before touching the database
    progress = res.progress("import-csv")
    await run_import_csv(await res.pool(), res.store(), files, progress)
    return finish(progress)


async def cmd_demo(res: Resources, args: argparse.Namespace) -> int:
    from ingest.demo.load import demo_loaded, run_demo

    pool = await res.pool()
    if args.if_needed and await demo_loaded(pool):
        print("demo data set already loaded", flush=True)
        return EXIT_OK
    summary = await run_demo(res.settings, res.dsn)
    print(summary.summary_line(), flush=True)
    return EXIT_FAILED if summary.failures else EXIT_OK


COMMANDS: dict[str, Callable[[Resources, argparse.Namespace], Awaitable[int]]] = {
    "backfill": cmd_backfill,
    "update-prices": cmd_update_prices,
    "evaluate": cmd_evaluate,
    "daily": cmd_daily,
    "requeue": cmd_requeue,
    "deliver": cmd_deliver,
    "sync-symbols": cmd_sync_symbols,
    "import-csv": cmd_import_csv,
    "demo": cmd_demo,
}


def _ns(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


def _stop_event(args: argparse.Namespace) -> asyncio.Event:
    """`daily`'s shared stop event, or a fresh one for a command of its own."""
    stop: asyncio.Event | None = getattr(args, "stop", None)
    return stop if stop is not None else asyncio.Event()


def _message(exc: BaseException) -> str:
    if isinstance(exc, ServiceError | DoltHubError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def run_command(settings: Settings, args: argparse.Namespace) -> int:
    async with AsyncExitStack() as stack:
        resources = Resources(settings, stack)
        with log_context(command=args.command):
            return await COMMANDS[args.command](resources, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, configure, run; every failure is one `error: …` line."""
    try:
        args = build_parser().parse_args(argv)
        settings = Settings.from_env()
        configure_logging(settings)
        return asyncio.run(run_command(settings, args))
    except UsageError as exc:
        report_error(str(exc), "ingest")
        return EXIT_USAGE
    except ConfigurationError as exc:
        report_error(exc.message, "ingest")
        return EXIT_USAGE
    except (ServiceError, DoltHubError) as exc:
        report_error(exc.message, "ingest")
        return EXIT_FAILED
    except KeyboardInterrupt:
        report_error("interrupted", "ingest")
        return EXIT_INTERRUPTED
    except (OSError, asyncpg.PostgresError) as exc:
        report_error(_message(exc), "ingest")
        return EXIT_FAILED
    except Exception as exc:
        outage = database_outage(exc)
        if outage is not None:  # the driver's own words for a server that went away
            log.debug("database outage", exc_info=exc)
            report_error(outage.message, "ingest")
            return EXIT_FAILED
        # A bug, not bad input: still one line; LOG_LEVEL=DEBUG shows the traceback.
        log.debug("unexpected failure", exc_info=exc)
        report_error(f"unexpected {_message(exc)}", "ingest")
        return EXIT_FAILED
