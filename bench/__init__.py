"""Benchmarks: each prints numbers and ratios, never asserts times."""
