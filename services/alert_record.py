"""The alert record: one list of an alert's fields, from which every view of it is derived.

Each field says where it appears: its SQL column, whether the evaluation writes it from a
transition, its key in the JSON payloads (webhook body, which the live subscription's and
push payloads follow), its name in the email digest and its attribute on the GraphQL
`Alert`. The SQL column lists, the webhook payload, the digest's view and the GraphQL type's
plain fields are built from this list; nothing restates it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from services.market.signals.registry import BY_ALERT_TYPE


def iso_instant(moment: datetime) -> str:
    """A timezone-aware moment in UTC, ISO 8601 (a naive one is a bug, not a guess)."""
    if moment.tzinfo is None:
        raise ValueError("alert timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _type_name(alert_type: str) -> str:
    # The GraphQL enum name, so webhook and API consumers see the same value.
    return BY_ALERT_TYPE[alert_type].graphql_name


def _iso_day(day: date) -> str:
    return day.isoformat()


def _about(
    column: str,
    *,
    payload: str | None = None,
    encode: Callable[[Any], Any] = lambda value: value,
    digest: str | None = None,
    written_from: str | None = None,
    sql_type: str = "text",
    graphql: str | None = None,
) -> Any:
    """Where a field lives: `column` (qualified), JSON `payload` key, `digest` attribute, the
    Transition attribute the evaluation writes it from, and the `graphql` Alert attribute
    (whose field the schema names in camelCase) that shows it as it is."""
    return field(
        metadata={
            "column": column,
            "payload": payload,
            "encode": encode,
            "digest": digest,
            "written_from": written_from,
            "sql_type": sql_type,
            "graphql": graphql,
        }
    )


@dataclass(frozen=True)
class AlertRecord:
    """One alert with its stock's ticker and name, as alert_history and entities store it."""

    id: UUID = _about("a.id", payload="alertId", encode=str, digest="alert_id")
    user_id: UUID = _about("a.user_id")
    alert_type: str = _about(
        "a.alert_type",
        payload="type",
        encode=_type_name,
        digest="alert_type",
        written_from="alert_type",
    )
    ticker: str = _about("e.ticker", payload="ticker", digest="ticker")
    stock_name: str | None = _about("e.name", payload="stockName", digest="stock_name")
    as_of: date = _about(
        "a.as_of", graphql="as_of", payload="asOf", encode=_iso_day, digest="as_of"
    )
    previous_state: str | None = _about(
        "a.previous_state",
        graphql="previous_state",
        payload="previousState",
        written_from="previous_state",
    )
    new_state: str = _about(
        "a.new_state", graphql="new_state", payload="newState", written_from="new_state"
    )
    headline: str = _about(
        "a.headline",
        graphql="headline",
        payload="headline",
        digest="headline",
        written_from="headline",
    )
    what_changed: str = _about(
        "a.what_changed",
        graphql="what_changed",
        payload="whatChanged",
        digest="what_changed",
        written_from="what_changed",
    )
    why_it_matters: str = _about(
        "a.why_it_matters",
        graphql="why_it_matters",
        payload="whyItMatters",
        digest="why_it_matters",
        written_from="why_it_matters",
    )
    before_vs_now: str = _about(
        "a.before_vs_now",
        graphql="before_vs_now",
        payload="beforeVsNow",
        digest="before_vs_now",
        written_from="before_vs_now",
    )
    what_didnt_change: str = _about(
        "a.what_didnt_change",
        graphql="what_didnt_change",
        payload="whatDidntChange",
        digest="what_didnt_change",
        written_from="what_didnt_change",
    )
    data_snapshot: dict[str, Any] = _about(
        "a.data_snapshot", written_from="snapshot", sql_type="jsonb"
    )
    sent_at: datetime = _about(
        "a.sent_at",
        graphql="created_at",
        payload="createdAt",
        encode=iso_instant,
        digest="created_at",
    )
    commit_seq: int = _about("a.commit_seq")


_FIELDS = fields(AlertRecord)


def _name(column: str) -> str:
    """The name a qualified column has in a result row (e.name is read as `name`)."""
    return column.split(".", 1)[1]


def columns(*, table: str | None = None, in_payload: bool = False) -> str:
    """A SELECT list of the record's columns (of one table alias, or those in the payload)."""
    chosen = [
        f.metadata["column"]
        for f in _FIELDS
        if (table is None or f.metadata["column"].startswith(table + "."))
        and (not in_payload or f.metadata["payload"] is not None)
    ]
    return ", ".join(chosen)


# The alert's own columns: every alert query selects these (plus opened_at and the stock).
ALERT_COLUMNS = columns(table="a")
# What a webhook body and an email section are built from.
PAYLOAD_COLUMNS = columns(in_payload=True)

# The columns the evaluation writes from a transition, in order, with their SQL types.
WRITTEN: tuple[tuple[str, str, str], ...] = tuple(
    (_name(f.metadata["column"]), f.metadata["written_from"], f.metadata["sql_type"])
    for f in _FIELDS
    if f.metadata["written_from"] is not None
)


def payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The alert's JSON object (webhook `data`) from a row holding PAYLOAD_COLUMNS."""
    return {
        f.metadata["payload"]: f.metadata["encode"](row[_name(f.metadata["column"])])
        for f in _FIELDS
        if f.metadata["payload"] is not None
    }


def graphql_fields() -> list[tuple[str, str, Any]]:
    """(GraphQL attribute, row column, Python type) of each field the Alert type shows as is."""
    hints = typing.get_type_hints(AlertRecord)
    return [
        (f.metadata["graphql"], _name(f.metadata["column"]), hints[f.name])
        for f in _FIELDS
        if f.metadata["graphql"] is not None
    ]


def digest_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The email digest's view of an alert row, by the digest's attribute names."""
    return {
        f.metadata["digest"]: row[_name(f.metadata["column"])]
        for f in _FIELDS
        if f.metadata["digest"] is not None
    }
