"""Fakes of external services that behave like the real ones, served on loopback."""
