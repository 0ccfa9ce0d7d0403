"""`python -m ingest status`: the operator's view, as text lines or one JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from services.db import Executor
from services.logs import escape_log_text
from services.operator_status import collect_status

# Raw error texts come from remote servers: escaped (a terminal escape stays inert) and capped.
ERROR_CHARS = 1000


async def status_report(db: Executor, tickers: Sequence[str], as_json: bool) -> str:
    """The report for `tickers` (all queues when empty), rendered for a terminal or a script."""
    report = await collect_status(db, tickers)
    if as_json:
        # asyncpg UUIDs are not uuid.UUID: `default=str` writes them as their text.
        options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        return orjson.dumps(report, option=options, default=str).decode()
    return "\n".join(_text_lines(report, tickers))


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _job_line(job: dict[str, Any]) -> str:
    line = (
        f"  {job['ticker']:<8} {job['status']:<10} priority {job['priority']} "
        f"({job['requesters']} users), retries {job['retry_count']}, "
        f"requested {_when(job['requested_at'])}"
    )
    if job["status"] == "processing":
        line += f", started {_when(job['started_at'])} by {job['locked_by']}"
    elif job["next_attempt_at"] is not None:
        line += f", next attempt {_when(job['next_attempt_at'])}"
    if job["completed_at"] is not None:
        line += f", finished {_when(job['completed_at'])}"
    if job["error_message"]:
        category = job["error_category"] or "uncategorised"
        line += f"\n      [{category}] {escape_log_text(job['error_message'], ERROR_CHARS)}"
    return line


def _text_lines(report: dict[str, Any], tickers: Sequence[str]) -> list[str]:
    backfill = report["backfill"]
    counts = backfill["counts"]
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pending", "processing", "failed"))
    lines = [f"backfill queue: {summary}, {counts.get('completed', 0)} completed"]
    if tickers:
        found = {job["ticker"] for job in backfill["jobs"]}
        lines += [_job_line(job) for job in backfill["jobs"]]
        lines += [f"  {t:<8} no backfill job" for t in tickers if t not in found]
    else:
        if backfill["waiting"]:
            lines.append(" waiting (in claim order):")
            lines += [_job_line(job) for job in backfill["waiting"]]
        if backfill["failed"]:
            lines.append(" failed (newest first):")
            lines += [_job_line(job) for job in backfill["failed"]]
    lines.append("evaluation runs (newest first):")
    if not report["evaluation_runs"]:
        lines.append("  none")
    for run in report["evaluation_runs"]:
        finished = _when(run["finished_at"]) if run["finished_at"] else "still open"
        lines.append(
            f"  as of {run['as_of']} scope {run['scope']}: {run['done']} done, "
            f"{run['failed']} failed, {run['open']} open of {run['entity_count']}; "
            f"started {_when(run['started_at'])}, finished {finished}"
        )
        for failure in run["failures"]:
            message = escape_log_text(failure["error_message"] or "", ERROR_CHARS)
            lines.append(f"      {failure['ticker']}: {message}")
    lines.append("outbox (pending per channel):")
    if not report["outbox"]:
        lines.append("  empty")
    for channel in report["outbox"]:
        lines.append(
            f"  {channel['channel']:<8} {channel['pending']} pending ({channel['due']} due), "
            f"oldest {_when(channel['oldest_pending'])}, "
            f"{channel['failed_last_day']} failed in the last day"
        )
    sync = report["symbol_sync"]
    if sync is None:
        lines.append("symbol sync: never")
    else:
        lines.append(
            f"symbol sync: {_when(sync['finished_at'])}, {sync['symbols']} symbols, "
            f"{sync['added']} added, {sync['retired']} retired"
        )
    return lines
