"""The evaluation job: claim entities, read their series, compute signals, commit alerts."""
