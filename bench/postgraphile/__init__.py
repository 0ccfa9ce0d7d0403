"""PostGraphile v4 baseline for bench/watchlist_vs_postgraphile.py (node package + helpers)."""
