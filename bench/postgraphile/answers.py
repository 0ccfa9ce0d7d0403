"""The watchlist query for each server, and their answers reduced to comparable values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

OUR_QUERY = """{ watchlist { count items {
  addedAt alertsEnabled valuationState trendState fundamentalsState
  valuationRegime trendPosition fundamentalDirection lastAlertAt lastEvaluatedAt
  stock { ticker name sector exchange dataStatus hasPriceData watcherCount
    signal { asOf close sma200 trendPosition valuationMetric valuationMultiple
             valuationPercentile valuationRegime epsTtm fundamentalDirection }
    backfill { status priority requestedAt retryCount errorMessage completedAt } } } } }"""

# The same information from PostGraphile's generated schema. Differences: the user id is an
# argument (no auth, no RLS); a watcher's states are the latest signal's (since migration
# 0008), evaluated for them when computed after the stock was added (derived client-side);
# the Direction arrows are not derivable; the latest backfill job needs a computed column.
PG_QUERY = """query Watchlist($userId: UUID!) { userById(id: $userId) {
  watchlistsByUserId(orderBy: [ADDED_AT_DESC, ID_DESC]) { totalCount nodes {
    addedAt alertsEnabled
    entityByEntityId { ticker name sector exchange dataStatus hasPriceData
      watchlistsByEntityId { totalCount }
      entitySignalsByEntityId(orderBy: AS_OF_DESC, first: 1) { nodes {
        asOf close sma200 trendPosition valuationMetric valuationMultiple
        valuationPercentile valuationRegime epsTtm fundamentalDirection computedAt } }
      latestBackfill { status priority requestedAt retryCount
        errorMessage: errorCategory completedAt }
      alertHistoriesByEntityId(condition: { userId: $userId }, orderBy: SENT_AT_DESC, first: 1) {
        nodes { sentAt } } } } } } }"""

# PostGraphile v5 with the amber preset: the same query, where a table's `id` column is named
# `rowId` (`id` is the global object identifier there).
PG5_QUERY = PG_QUERY.replace("userById(id:", "userByRowId(rowId:").replace(
    "ID_DESC]", "ROW_ID_DESC]"
)


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def number(value: float | None) -> float | None:
    return None if value is None else float(value)


def signal_tuple(signal: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if signal is None:
        return None
    floats = ("close", "sma200", "valuationMultiple", "valuationPercentile", "epsTtm")
    texts = ("asOf", "trendPosition", "valuationMetric", "valuationRegime", "fundamentalDirection")
    return tuple(number(signal[k]) for k in floats) + tuple(signal[k] for k in texts)


def job_tuple(job: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if job is None:
        return None
    return (
        job["status"].upper(),
        job["priority"],
        instant(job["requestedAt"]),
        job["retryCount"],
        job["errorMessage"],
        instant(job["completedAt"]),
    )


def our_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Our answer as comparable values."""
    items = body["data"]["watchlist"]["items"]
    return [
        {
            "ticker": item["stock"]["ticker"],
            "name": item["stock"]["name"],
            "sector": item["stock"]["sector"],
            "exchange": item["stock"]["exchange"],
            "dataStatus": item["stock"]["dataStatus"],
            "hasPriceData": item["stock"]["hasPriceData"],
            "watchers": item["stock"]["watcherCount"],
            "signal": signal_tuple(item["stock"]["signal"]),
            "backfill": job_tuple(item["stock"]["backfill"]),
            "states": (
                item["valuationRegime"],
                item["trendPosition"],
                item["fundamentalDirection"],
            ),
            "alertsEnabled": item["alertsEnabled"],
            "addedAt": instant(item["addedAt"]),
            "lastAlertAt": instant(item["lastAlertAt"]),
            "lastEvaluatedAt": instant(item["lastEvaluatedAt"]),
        }
        for item in items
    ]


def state_of(signal: dict[str, Any] | None, key: str) -> str:
    """The latest signal's state, else UNKNOWN (as our server does)."""
    return str((signal or {}).get(key) or "UNKNOWN")


def evaluated_at(signal: dict[str, Any] | None, added_at: datetime | None) -> datetime | None:
    """When the watcher's view was last evaluated: the signal's time if after the add."""
    computed = instant((signal or {}).get("computedAt"))
    return computed if computed and added_at and computed > added_at else None


def postgraphile_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """PostGraphile's answer as the same values (the watcher's view derived here, client-side)."""
    data = body["data"]
    user = data["userById"] if "userById" in data else data["userByRowId"]  # v4, v5
    result = []
    for node in user["watchlistsByUserId"]["nodes"]:
        entity = node["entityByEntityId"]
        signals = entity["entitySignalsByEntityId"]["nodes"]
        signal = signals[0] if signals else None
        alerts = entity["alertHistoriesByEntityId"]["nodes"]

        result.append(
            {
                "ticker": entity["ticker"],
                "name": entity["name"],
                "sector": entity["sector"],
                "exchange": entity["exchange"],
                "dataStatus": entity["dataStatus"].upper(),
                "hasPriceData": entity["hasPriceData"],
                "watchers": entity["watchlistsByEntityId"]["totalCount"],
                "signal": signal_tuple(signal),
                "backfill": job_tuple(entity["latestBackfill"]),
                "states": (
                    state_of(signal, "valuationRegime"),
                    state_of(signal, "trendPosition"),
                    state_of(signal, "fundamentalDirection"),
                ),
                "alertsEnabled": node["alertsEnabled"],
                "addedAt": instant(node["addedAt"]),
                "lastAlertAt": instant(alerts[0]["sentAt"]) if alerts else None,
                "lastEvaluatedAt": evaluated_at(signal, instant(node["addedAt"])),
            }
        )
    return result
