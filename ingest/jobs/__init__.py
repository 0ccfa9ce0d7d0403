"""The data jobs: backfill, update-prices, sync-symbols, import-csv, and their one write path."""
