"""Server settings for benchmarks: one user at full speed is far over a real user's budget."""

# Budgets are still charged (their cost is part of what is measured), never exhausted.
UNLIMITED_BUDGET = {"GRAPHQL_COST_PER_MINUTE": str(10**15)}
