"""Business logic on asyncpg: users, watchlists, entities, alerts, backfill queue."""
