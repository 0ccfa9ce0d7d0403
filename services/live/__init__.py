"""Live alerts for subscribers: the per-process LISTEN fan-out and the replay before it."""
