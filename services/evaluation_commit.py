"""Evaluation commit: one transaction per entity writes its signal, alerts (+NOTIFY), states."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from services.entities import Connection


@dataclass(frozen=True)
class AlertRow:
    user_id: UUID
    alert_type: str
    previous_state: str
    new_state: str
    headline: str
    what_changed: str
    why_it_matters: str
    before_vs_now: str
    what_didnt_change: str
    snapshot: dict[str, Any]


@dataclass(frozen=True)
class StateRow:
    user_id: UUID
    valuation_regime: str
    trend_position: str
    fundamental_direction: str


@dataclass(frozen=True)
class SignalRow:
    entity_id: UUID
    as_of: date
    close: float | None
    sma200: float | None
    trend_position: str
    valuation_metric: str | None
    valuation_multiple: float | None
    valuation_percentile: float | None
    valuation_regime: str
    eps_ttm: float | None
    fundamental_direction: str
    details: dict[str, Any]


_FINISH_CLAIM = """
UPDATE evaluation_claims SET status = 'done', finished_at = now(), error_message = NULL
WHERE run_id = $1 AND entity_id = $2 AND claimed_by = $3 AND status = 'processing'
RETURNING 1
"""
_UPSERT_SIGNAL = """
INSERT INTO entity_signals (entity_id, as_of, close, sma200, trend_position, valuation_metric,
    valuation_multiple, valuation_percentile, valuation_regime, eps_ttm, fundamental_direction,
    details, computed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, now())
ON CONFLICT (entity_id, as_of) DO UPDATE SET
    close = EXCLUDED.close, sma200 = EXCLUDED.sma200, trend_position = EXCLUDED.trend_position,
    valuation_metric = EXCLUDED.valuation_metric,
    valuation_multiple = EXCLUDED.valuation_multiple,
    valuation_percentile = EXCLUDED.valuation_percentile,
    valuation_regime = EXCLUDED.valuation_regime, eps_ttm = EXCLUDED.eps_ttm,
    fundamental_direction = EXCLUDED.fundamental_direction, details = EXCLUDED.details,
    computed_at = EXCLUDED.computed_at
"""
_INSERT_ALERTS = """
WITH inserted AS (
    INSERT INTO alert_history (user_id, entity_id, alert_type, as_of, previous_state,
        new_state, headline, what_changed, why_it_matters, before_vs_now, what_didnt_change,
        data_snapshot)
    SELECT a.user_id, $1, a.alert_type, $2, a.previous_state, a.new_state, a.headline,
           a.what_changed, a.why_it_matters, a.before_vs_now, a.what_didnt_change,
           a.snapshot::jsonb
    FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::text[], $12::text[])
         AS a(user_id, alert_type, previous_state, new_state, headline, what_changed,
              why_it_matters, before_vs_now, what_didnt_change, snapshot)
    ON CONFLICT (user_id, entity_id, alert_type, as_of) DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('alert_created', id::text) FROM inserted
"""
# A state evaluated for a later date is never overwritten by a back-dated run.
_UPSERT_STATES = """
INSERT INTO user_entity_settings AS s (user_id, entity_id, last_valuation_regime,
    last_trend_position, last_fundamental_direction, last_evaluated_at, last_evaluated_as_of)
SELECT x.user_id, $1, x.valuation, x.trend, x.fundamentals, now(), $2
FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[])
     AS x(user_id, valuation, trend, fundamentals)
ON CONFLICT (user_id, entity_id) DO UPDATE SET
    last_valuation_regime = EXCLUDED.last_valuation_regime,
    last_trend_position = EXCLUDED.last_trend_position,
    last_fundamental_direction = EXCLUDED.last_fundamental_direction,
    last_evaluated_at = EXCLUDED.last_evaluated_at,
    last_evaluated_as_of = EXCLUDED.last_evaluated_as_of,
    updated_at = now()
WHERE s.last_evaluated_as_of IS NULL OR s.last_evaluated_as_of <= EXCLUDED.last_evaluated_as_of
"""


async def commit_entity(
    pool: asyncpg.Pool,
    *,
    run_id: UUID,
    worker: str,
    signal: SignalRow,
    alerts: Sequence[AlertRow],
    states: Sequence[StateRow],
) -> list[UUID] | None:
    """One transaction: finish the claim, store the signal, insert + notify alerts, set states.

    Returns the ids of newly inserted alerts, or None when the claim was lost (lease expired
    and another evaluator took it), in which case nothing is written.
    """
    try:
        async with pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_FINISH_CLAIM, run_id, signal.entity_id, worker) is None:
                raise _ClaimLost  # rolls the transaction back
            await _upsert_signal(conn, signal)
            inserted = await _insert_alerts(conn, signal, alerts) if alerts else []
            if states:
                await _upsert_states(conn, signal, states)
            return inserted
    except _ClaimLost:
        return None


async def _upsert_signal(conn: Connection, signal: SignalRow) -> None:
    await conn.execute(
        _UPSERT_SIGNAL,
        signal.entity_id,
        signal.as_of,
        signal.close,
        signal.sma200,
        signal.trend_position,
        signal.valuation_metric,
        signal.valuation_multiple,
        signal.valuation_percentile,
        signal.valuation_regime,
        signal.eps_ttm,
        signal.fundamental_direction,
        _json(signal.details),
    )


async def _insert_alerts(
    conn: Connection, signal: SignalRow, alerts: Sequence[AlertRow]
) -> list[UUID]:
    rows = await conn.fetch(_INSERT_ALERTS, signal.entity_id, signal.as_of, *_columns(alerts))
    return [row["id"] for row in rows]


async def _upsert_states(conn: Connection, signal: SignalRow, states: Sequence[StateRow]) -> None:
    await conn.execute(
        _UPSERT_STATES,
        signal.entity_id,
        signal.as_of,
        [s.user_id for s in states],
        [s.valuation_regime for s in states],
        [s.trend_position for s in states],
        [s.fundamental_direction for s in states],
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class _ClaimLost(Exception):
    pass


def _columns(alerts: Sequence[AlertRow]) -> list[list[Any]]:
    return [
        [a.user_id for a in alerts],
        [a.alert_type for a in alerts],
        [a.previous_state for a in alerts],
        [a.new_state for a in alerts],
        [a.headline for a in alerts],
        [a.what_changed for a in alerts],
        [a.why_it_matters for a in alerts],
        [a.before_vs_now for a in alerts],
        [a.what_didnt_change for a in alerts],
        [_json(a.snapshot) for a in alerts],
    ]
