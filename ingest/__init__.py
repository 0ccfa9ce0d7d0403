"""Batch jobs: DoltHub backfill, object store, Parquet layout, evaluation and the ingest CLI."""
