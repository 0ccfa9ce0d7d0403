"""The pure domain: states, split adjustment, trend, valuation, fundamentals, alerts. No I/O."""
