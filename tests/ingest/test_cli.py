"""`python -m ingest`: one-line errors for bad arguments/configuration, and `daily` exit codes."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid

import asyncpg
import pytest

from ingest.progress import Progress
from services.db import dsn_with_database
from tests.fakes.dolthub_server import FakeDoltHub
from tests.fixtures.ingest import CliResult, queue_tickers, run_ingest
from tests.net import free_port


def assert_one_line_error(result: CliResult, code: int, starts: str) -> None:
    assert result.code == code, (result.code, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {starts}"), lines[0]


BAD_ARGUMENTS = [
    ([], "the following arguments are required: COMMAND"),
    (["rebuild"], "argument COMMAND: invalid choice: 'rebuild'"),
    (["backfill", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["backfill", "--max-items", "many"], "argument --max-items: expected a whole number"),
    (["backfill", "--verbose"], "unrecognized arguments: --verbose"),
    (["evaluate", "--as-of", "2026-13-01"], "argument --as-of: expected a date as YYYY-MM-DD"),
    (["evaluate", "--tickers", "AAPL,toolongticker"], "argument --tickers: invalid ticker"),
    (["update-prices", "--tickers", ","], "argument --tickers: expected a comma-separated"),
    (["import-csv"], "the following arguments are required: DIR"),
    (["deliver", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["deliver", "--follow", "yes"], "unrecognized arguments: yes"),
]


async def test_bad_arguments_are_one_line_errors(ingest_env: dict[str, str]) -> None:
    results = await asyncio.gather(*(run_ingest(args, ingest_env) for args, _ in BAD_ARGUMENTS))
    for (_, message), result in zip(BAD_ARGUMENTS, results, strict=True):
        assert_one_line_error(result, 2, message)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL must start with one of postgres://"),
        ("DOLTHUB_RPS", "fast", "DOLTHUB_RPS must be a number, got 'fast'"),
        ("DOLTHUB_MAX_RETRIES", "-1", "DOLTHUB_MAX_RETRIES must be >= 0, got '-1'"),
        ("BACKFILL_LEASE_SECONDS", "0", "BACKFILL_LEASE_SECONDS must be >= 1"),
        ("OBJECT_STORE_URL", "ftp://host/x", "OBJECT_STORE_URL must start with one of file://"),
        ("APP_ENV", "staging", "APP_ENV must be one of"),
        ("WEBHOOK_RETRY_SCHEDULE", "60,soon", "WEBHOOK_RETRY_SCHEDULE must be comma-separated"),
        ("WEBHOOK_RETRY_SCHEDULE", "0", "WEBHOOK_RETRY_SCHEDULE must list 1-20 delays"),
        ("SMTP_URL", "http://mail.example.com", "SMTP_URL must start with one of smtp://"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json; got 'xml'"),
        ("DELIVERY_LEASE_SECONDS", "1", "DELIVERY_LEASE_SECONDS must be >= 5"),
        ("WEBHOOK_ALLOW_PRIVATE", "maybe", "WEBHOOK_ALLOW_PRIVATE must be a boolean"),
    ],
)
async def test_bad_configuration_names_the_variable(
    ingest_env: dict[str, str], variable: str, value: str, message: str
) -> None:
    result = await run_ingest(["backfill"], ingest_env, **{variable: value})
    assert_one_line_error(result, 2, message)


async def test_unreachable_database_is_one_line_without_the_password(
    ingest_env: dict[str, str],
) -> None:
    dsn = f"postgresql://ingest:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    for command in (["backfill"], ["update-prices"], ["sync-symbols"]):
        result = await run_ingest(command, ingest_env, DATABASE_URL=dsn)
        assert_one_line_error(result, 2, "cannot connect to the database at postgresql://")
        assert "s3cret-pw" not in result.stderr and ":***@" in result.stderr


async def test_unmigrated_database_says_how_to_fix_it(
    ingest_env: dict[str, str], server_dsn: str
) -> None:
    name = f"mc_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        result = await run_ingest(
            ["backfill"], ingest_env, DATABASE_URL=dsn_with_database(server_dsn, name)
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert_one_line_error(result, 2, "the database has no schema yet")
    assert "python -m migrations up" in result.stderr


async def test_backfill_on_an_empty_queue_reports_zero(ingest_env: dict[str, str]) -> None:
    result = await run_ingest(["backfill", "--workers", "3"], ingest_env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("backfill: 0 failed, 0 DoltHub requests")
    assert result.stdout.count("\n") == 1


async def test_daily_runs_every_step_even_after_one_fails(
    pool: asyncpg.Pool, ingest_env: dict[str, str], fake_dolthub: FakeDoltHub
) -> None:
    await queue_tickers(pool, ["KO"])
    first = await run_ingest(["backfill"], ingest_env)
    assert first.code == 0 and "1 completed" in first.stdout, first.stderr
    await pool.execute("UPDATE entities SET price_data_max_date = '2026-11-20'")
    await queue_tickers(pool, ["JPM"])
    fake_dolthub.reset()
    fake_dolthub.fail_next(1, status=400)  # update-prices' only request is refused
    result = await run_ingest(["daily"], ingest_env)
    assert result.code == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("update-prices: 1 failed") and "KO: DoltHub" in lines[0]
    assert lines[1].startswith("backfill: 1 completed, 0 failed")
    assert lines[2].startswith("evaluate")
    assert lines[-1] == "daily: failed steps: update-prices"
    jpm = await pool.fetchrow("SELECT data_status FROM entities WHERE ticker = 'JPM'")
    assert jpm is not None and jpm["data_status"] == "ready"

    fake_dolthub.reset()
    again = await run_ingest(["daily"], ingest_env)
    assert again.code == 0, again.stdout + again.stderr
    summary = again.stdout.strip().splitlines()[0]
    assert (
        summary.startswith("update-prices: ") and "1 updated, 0 failed, 5 bars written" in summary
    )
    assert again.stdout.strip().endswith("daily: all steps succeeded")
    max_date = await pool.fetchval("SELECT price_data_max_date FROM entities WHERE ticker = 'KO'")
    assert max_date.isoformat() == "2026-11-27"


async def test_daily_with_an_unreachable_database_fails_every_step_but_runs_them(
    ingest_env: dict[str, str],
) -> None:
    dsn = f"postgresql://127.0.0.1:{free_port()}/nowhere"
    result = await run_ingest(["daily"], ingest_env, DATABASE_URL=dsn)
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == [
        "update-prices",
        "backfill",
        "evaluate",
        "deliver",
        "sync-symbols",
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().endswith(
        "daily: failed steps: update-prices, backfill, evaluate, deliver, sync-symbols"
    )


def test_progress_draws_a_bar_on_a_tty_and_logs_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    screen = io.StringIO()
    bar = Progress("backfill", total=4, stream=screen, interactive=True)
    bar.item_done("completed")
    bar.item_done("completed")
    bar.set_total(4)
    assert re.search(r"\rbackfill: +50%\|[^|]+\| 2/4 \[", screen.getvalue()), screen.getvalue()
    bar.item_failed("KO", "HTTP 503")
    bar.add("rows rejected", 3)
    bar.close()
    assert bar.summary_line().startswith("backfill: 2 completed, 1 failed, 3 rows rejected in ")
    assert bar.summary_line().endswith(" — failures: KO: HTTP 503")

    caplog.set_level(logging.INFO, logger="ingest.progress")
    quiet = io.StringIO()
    log_lines = Progress("update-prices", total=2, stream=quiet, interactive=False, log_interval=0)
    log_lines.item_done("updated")
    assert quiet.getvalue() == ""
    assert "update-prices: 1/2 items, 0 failed" in caplog.text


@pytest.mark.parametrize("command", ["evaluate", "deliver"])
async def test_production_without_smtp_says_once_at_start_that_email_is_not_queued(
    ingest_env: dict[str, str], command: str
) -> None:
    production = {"APP_ENV": "production", "JWT_SECRET": "s" * 32}
    result = await run_ingest([command], ingest_env, **production)
    assert result.code == 0, result.stderr
    assert result.stderr.count("email is not configured") == 1, result.stderr
    assert "no email deliveries are queued or sent" in result.stderr
    with_smtp = await run_ingest(
        [command],
        ingest_env,
        **production,
        SMTP_URL="smtp://127.0.0.1:2525",
        EMAIL_FROM="alerts@example.com",
        EMAIL_LINK_SECRET="e" * 32,
    )
    assert with_smtp.code == 0, with_smtp.stderr
    assert "email is not configured" not in with_smtp.stderr
