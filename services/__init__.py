"""Everything below GraphQL, shared by the API and the jobs: SQL on asyncpg, auth, domain."""
