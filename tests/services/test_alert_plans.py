"""Alert lists keep an index-order plan for page one, also as generic (cached) plans."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from services.alerts import PAGE_HEAD, PAGE_ORDER, AlertFilter, filter_conditions
from services.pagination import LAST_SEQ

FILTERS = [
    AlertFilter(),
    AlertFilter(alert_type="trend_break"),
    AlertFilter(unread=True),
    AlertFilter(ticker="MANY1"),
    AlertFilter(alert_type="trend_break", unread=False),
]


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    found = [plan]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found.extend(_nodes(child))
    return found


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: repr(w))
async def test_page_one_reads_in_index_order_as_a_generic_plan_for_a_10000_alert_user(
    pool: asyncpg.Pool, where: AlertFilter
) -> None:
    user = uuid.uuid4()
    await pool.execute("INSERT INTO users (id) VALUES ($1)", user)
    await pool.execute(
        "INSERT INTO entities (ticker) SELECT 'MANY' || n FROM generate_series(1, 20) n"
    )
    await pool.execute(
        """
        INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, headline,
            what_changed, why_it_matters, before_vs_now, what_didnt_change, opened_at)
        SELECT $1, e.id, t, date '2000-01-01' + d, 'X', 'h', 'w', 'y', 'b', 'd',
               CASE WHEN d % 3 = 0 THEN now() END
        FROM entities e, generate_series(1, 250) d,
             unnest(ARRAY['trend_break', 'valuation_regime_change']) t
        """,
        user,
    )
    await pool.execute("ANALYZE alert_history")
    conditions, values = filter_conditions(where, 4)
    literals = [f"'{user}'", str(LAST_SEQ), "21", *(f"'{v}'" for v in values)]
    async with pool.acquire() as conn:
        # The plan a prepared statement settles on after its first executions.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE page AS {PAGE_HEAD}{conditions}{PAGE_ORDER}")
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE page({', '.join(literals)})")
        await conn.execute("DEALLOCATE page")
    nodes = _nodes(json.loads(raw)[0]["Plan"])
    assert not any(node["Node Type"] == "Seq Scan" for node in nodes), nodes
    if where.ticker is None:
        # Index order and a LIMIT: no sort of the user's whole history.
        assert not any(node["Node Type"] == "Sort" for node in nodes), nodes
        assert any("commit_seq" in str(node.get("Index Name", "")) for node in nodes), nodes
