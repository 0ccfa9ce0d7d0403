"""Signal evaluation (SPEC §8): split adjustment, trend, fundamentals, valuation, alerts."""
