"""Scenario files: their format, the runner, and what they cover."""
