"""Which asyncpg failures mean "the database is unavailable" (DATABASE_UNAVAILABLE)."""

from __future__ import annotations

import asyncpg
import pytest

from services.db import database_outage
from services.errors import DatabaseUnavailable

OUTAGES = [
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.InterfaceError("connection is closed"),
    # A pooled connection whose statement a server shutdown cut short (seen in
    # tests/faults/test_postgres_restart.py when the next claim reused it).
    asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
]
NOT_OUTAGES = [
    asyncpg.UniqueViolationError("duplicate key value"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ValueError("bad input"),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_connection_failures_are_a_database_outage(exc: BaseException) -> None:
    outage = database_outage(exc)
    assert isinstance(outage, DatabaseUnavailable)
    assert outage.code == "DATABASE_UNAVAILABLE"
    assert outage.message == "the database is unavailable; try again shortly"  # no driver text


@pytest.mark.parametrize("exc", NOT_OUTAGES, ids=lambda e: type(e).__name__)
def test_query_errors_and_misuse_are_not_an_outage(exc: BaseException) -> None:
    assert database_outage(exc) is None
