"""The batch jobs run by cron: DoltHub backfill, price updates, evaluation, CSV import, demo."""
