"""The generic signal fields: every registered kind's state and arrow, in registry order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.market.signals.registry import KINDS
from tests.fixtures.api import ApiData, Viewer
from tests.fixtures.app import GraphQLClient

QUERY = """
{ watchlist { items {
    signals { kind state arrow }
    stock { ticker signal { states { kind state arrow } } } } } }
"""


async def test_signals_list_every_kind_from_columns_or_the_states_object(
    gql: GraphQLClient, api_data: ApiData, new_viewer: Callable[..., Viewer]
) -> None:
    viewer = new_viewer()
    await gql("{ me { id } }", token=viewer.token)
    old = await api_data.entity("OLD", has_price_data=True)
    new = await api_data.entity("NEW", has_price_data=True)
    none = await api_data.entity("NONE", has_price_data=True)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for offset, entity in enumerate((old, new, none)):
        await api_data.watch(viewer.id, entity, added_at=base + dt.timedelta(days=offset))
    # A row from before the states object: the columns say it.
    await api_data.signal(old, dt.date(2025, 2, 3), trend_position="BELOW_200DMA")
    # A row whose object says more than the columns (a kind stored only there wins).
    await api_data.signal(new, dt.date(2025, 2, 3), valuation_regime="CHEAP")
    await api_data.pool.execute(
        'UPDATE entity_signals SET states = \'{"valuation": "EXPENSIVE"}\' WHERE entity_id = $1',
        new,
    )

    body = await gql(QUERY, token=viewer.token)

    assert "errors" not in body, body
    items = {i["stock"]["ticker"]: i for i in body["data"]["watchlist"]["items"]}
    expected_old = [
        {"kind": "VALUATION_REGIME_CHANGE", "state": "CHEAP", "arrow": "DOWN"},
        {"kind": "TREND_BREAK", "state": "BELOW_200DMA", "arrow": "DOWN"},
        {"kind": "FUNDAMENTAL_INFLECTION", "state": "IMPROVING", "arrow": "UP"},
    ]
    # Kinds added after the first three were never evaluated for these rows: UNKNOWN.
    later = [
        {"kind": kind.graphql_name, "state": "UNKNOWN", "arrow": "NEUTRAL"} for kind in KINDS[3:]
    ]
    assert items["OLD"]["signals"] == expected_old + later
    assert items["OLD"]["stock"]["signal"]["states"] == expected_old + later
    assert items["NEW"]["signals"][0] == {
        "kind": "VALUATION_REGIME_CHANGE",
        "state": "EXPENSIVE",
        "arrow": "UP",
    }
    assert items["NONE"]["stock"]["signal"] is None
    assert [s["state"] for s in items["NONE"]["signals"]] == ["UNKNOWN"] * len(KINDS)
    assert {s["arrow"] for s in items["NONE"]["signals"]} == {"NEUTRAL"}
