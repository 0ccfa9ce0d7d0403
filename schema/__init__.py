"""Strawberry types and the one Schema object."""
