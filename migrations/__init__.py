"""Forward-only numbered SQL migrations and their runner."""
