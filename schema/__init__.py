"""Strawberry types, built from rows; fields below the root read the request via schema.context."""
