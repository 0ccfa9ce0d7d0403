"""Microbenchmark: µs per static cost analysis of the demo's typical documents.

Usage: python bench/query_cost.py [--runs 20000]
Times `QueryLimits.cost` (the walk over an already parsed document, with its variables), which
every executed operation pays once before it runs; and a budget charge. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from graphql import parse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak import ALERTS, STOCK, WATCHLIST
from bench.watchlist_api import QUERY as WATCHLIST_50
from services.cost_budget import CostBudgets
from services.settings import Settings
from web.graphql_app import build_schema
from web.rate_limit import QueryLimits

ATTACK = (
    "{ "
    + " ".join(
        f'a{i}: searchStocks(query: "demo", limit: 50) '
        '{ prices(from: "2015-07-01", to: "2025-06-30") { date close } }'
        for i in range(10)
    )
    + " }"
)
STOCK_YEAR = """query($t: String!) { stock(ticker: $t) { ticker name sector dataStatus watcherCount
  signal { asOf close sma200 trendPosition valuationRegime } backfill { status }
  myAlerts { id headline } prices { date open high low close volume sma200 } } }"""
DOCUMENTS = {
    "watchlist (bench/watchlist_api.py)": (WATCHLIST_50, {}),
    "watchlist (bench/soak.py)": (WATCHLIST, {}),
    "alerts page (first: 20)": (ALERTS, {}),
    "stock page, a year of prices": (STOCK_YEAR, {"t": "AAPL"}),
    "stock (bench/soak.py)": (STOCK, {"t": "AAPL"}),
    "issue 18 attack (10 aliases)": (ATTACK, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    settings = Settings()
    limits = QueryLimits(settings)
    build_schema(settings, limits)
    for name, (text, variables) in DOCUMENTS.items():
        document = parse(text)
        cost = limits.cost(document, None, variables)
        started = time.perf_counter()
        for _ in range(args.runs):
            limits.cost(document, None, variables)
        micros = (time.perf_counter() - started) / args.runs * 1e6
        print(f"{name:40} cost {cost:>9,}  {micros:6.1f} µs per analysis")
    budgets = CostBudgets(200_000)
    clients = [uuid.uuid4() for _ in range(1_000)]
    started = time.perf_counter()
    for i in range(args.runs):
        budgets.charge(clients[i % len(clients)], 1)
    micros = (time.perf_counter() - started) / args.runs * 1e6
    print(f"{'budget charge (1,000 clients)':40} {'':15} {micros:6.2f} µs per charge")


if __name__ == "__main__":
    main()
