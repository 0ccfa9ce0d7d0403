"""The alert record is the one field list: the alert_types table, GraphQL and digest follow it."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime

import asyncpg
from strawberry.types import get_object_definition

from schema.alert import Alert
from services import alert_record, users
from services.delivery.email import DigestAlert
from services.market.signals.registry import KINDS
from tests.fixtures.evaluation import add_user


async def test_alert_types_table_equals_the_registry(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT alert_type, kind FROM alert_types ORDER BY position")
    assert [(r["alert_type"], r["kind"]) for r in rows] == [(k.alert_type, k.name) for k in KINDS]


async def test_a_new_alert_type_row_is_on_for_existing_users(pool: asyncpg.Pool) -> None:
    user_id = await add_user(pool)
    # A kind added later: its migration inserts one row, and nothing is written per user.
    await pool.execute(
        "INSERT INTO alert_types (alert_type, kind, position) VALUES ('x_change', 'x', 99)"
    )
    row = await users.get_user(pool, user_id)
    assert row["alert_types"][-1] == "x_change"
    # Choosing types turns the others off (x_change too); a type added later is on.
    await pool.execute("UPDATE users SET alert_types = ARRAY['trend_break'] WHERE id = $1", user_id)
    await pool.execute(
        "INSERT INTO alert_types (alert_type, kind, position) VALUES ('y_change', 'y', 100)"
    )
    row = await users.get_user(pool, user_id)
    assert list(row["alert_types"]) == ["trend_break", "y_change"]


async def test_an_unknown_alert_type_is_refused_by_the_database(pool: asyncpg.Pool) -> None:
    user_id = uuid.uuid4()
    try:
        await pool.execute(
            "INSERT INTO users (id, alert_types) VALUES ($1, ARRAY['nope'])", user_id
        )
    except asyncpg.CheckViolationError:
        pass
    else:
        raise AssertionError("an unknown alert type was stored")


def test_graphql_alert_and_digest_show_the_record_fields() -> None:
    payload_keys = list(alert_record.payload(_row()).keys())
    assert payload_keys == [
        "alertId", "type", "ticker", "stockName", "asOf", "previousState", "newState",
        "headline", "whatChanged", "whyItMatters", "beforeVsNow", "whatDidntChange",
        "createdAt",
    ]  # fmt: skip
    digest = {f.name for f in dataclasses.fields(DigestAlert)}
    assert digest == set(alert_record.digest_values(_row()))
    graphql = [f.python_name for f in get_object_definition(Alert, strict=True).fields]
    assert graphql == [
        "id", "type", "stock", "as_of", "previous_state", "new_state", "headline",
        "what_changed", "why_it_matters", "before_vs_now", "what_didnt_change", "created_at",
        "opened_at", "details",
    ]  # fmt: skip
    # The record's plain fields are Alert's, in the record's order.
    assert [name for name, _, _ in alert_record.graphql_fields()] == graphql[3:12]


def _row() -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "alert_type": "trend_break",
        "ticker": "ACME",
        "name": "Acme",
        "as_of": date(2024, 1, 2),
        "previous_state": "ABOVE_200DMA",
        "new_state": "BELOW_200DMA",
        "headline": "h",
        "what_changed": "w",
        "why_it_matters": "y",
        "before_vs_now": "b",
        "what_didnt_change": "d",
        "sent_at": datetime(2024, 1, 2, tzinfo=UTC),
    }
