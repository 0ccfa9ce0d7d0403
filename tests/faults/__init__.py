"""Fault tests: real processes killed, restarted or cut off while the system works."""
