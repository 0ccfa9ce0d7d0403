"""Signal kinds: one module per kind, listed once in services.market.signals.registry."""
