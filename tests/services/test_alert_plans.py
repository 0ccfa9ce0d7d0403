"""Alert lists keep an index-order plan for page one, also as generic (cached) plans."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from services.alerts import PAGE_HEAD, PAGE_ORDER, AlertFilter, entity_of, filter_conditions
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
    # Other users' alerts, as on a real server, so user_id is selective in the statistics.
    await pool.execute(
        """
        WITH others AS (
            INSERT INTO users (id) SELECT gen_random_uuid() FROM generate_series(1, 200)
            RETURNING id
        )
        INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, new_state, headline,
            what_changed, why_it_matters, before_vs_now, what_didnt_change)
        SELECT o.id, e.id, 'trend_break', date '2000-01-01' + d, 'X', 'h', 'w', 'y', 'b', 'd'
        FROM others o, (SELECT id FROM entities LIMIT 5) e, generate_series(1, 10) d
        """
    )
    await pool.execute("ANALYZE")
    entity_id = await entity_of(pool, where)
    conditions, values = filter_conditions(where, entity_id, 4)
    literals = [f"'{user}'", str(LAST_SEQ), "21", *(f"'{v}'" for v in values)]
    async with pool.acquire() as conn:
        # The plan a prepared statement settles on after its first executions.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE page AS {PAGE_HEAD}{conditions}{PAGE_ORDER}")
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE page({', '.join(literals)})")
        await conn.execute("DEALLOCATE page")
    nodes = _nodes(json.loads(raw)[0]["Plan"])
    scans = {(n["Node Type"], n.get("Relation Name")) for n in nodes}
    assert ("Seq Scan", "alert_history") not in scans, nodes
    # Index order and a LIMIT: no sort of the user's whole history, and for one stock the
    # index that starts with it (not a walk of the history filtered by stock).
    assert not any(node["Node Type"] == "Sort" for node in nodes), nodes
    wanted = "alert_history_user_entity_seq" if where.ticker else "seq"
    used = [str(node.get("Index Name", "")) for node in nodes]
    assert any(name.endswith(wanted) for name in used), used
